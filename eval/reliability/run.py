"""`make reliability`: the fault, fuzz, bad-input and load runs, and one table of their figures.

Each part runs as users' processes would: the crash tests kill real `rag`
processes by progress (``rag.faults``), schemathesis fuzzes the app's own
OpenAPI schema, and the load run drives a live `rag serve` over loopback.

Tenant keys are tried on every route (``tests/api/test_tenants.py``) and the
prompt-injection corpus goes through the answer pipeline with the bundled
generator and a canary in the system prompt (:mod:`eval.reliability.injection`).

Run: ``python -m eval.reliability.run [--seconds 30] [--only tenants injection]``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from eval.reliability.load import run_load

ROOT = Path(__file__).resolve().parents[2]

PARTS = {
    "kill -9 by progress (CLI ingest, delete, replay, collection delete)": (
        "tests/rag/test_crash.py",
        "100% consistent, every document ready or failed with a reason",
    ),
    "kill -9 of a live server mid-upload and mid-delete": (
        "tests/api/test_server_crash.py",
        "consistent; upload ready or failed with a reason",
    ),
    "schemathesis, every operation, all checks, stateful": (
        "tests/api/test_schemathesis.py",
        "0 server errors, 0 schema violations",
    ),
    "bad inputs and probe regressions (files, names, JSON, bounds)": (
        "tests/api/test_fuzz_regressions.py",
        "a 4xx that says what to do; nothing stored, nothing outside the data dir",
    ),
}


def _pytest(path: str) -> tuple[int, int, str]:
    """(passed, failed-or-errors, last line) of one test file run with pytest."""
    if not (ROOT / path).exists():
        return 0, 0, "absent"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", path],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-200:]
    passed = sum(int(n) for n in re.findall(r"(\d+) passed", last))
    failed = sum(int(n) for n in re.findall(r"(\d+) (?:failed|error)", last))
    return passed, failed, last


def _kill_points() -> int:
    sys.path.insert(0, str(ROOT))
    from tests.rag.test_crash import PLAN

    return len(set(PLAN))


Row = tuple[str, str, str, bool]
TENANT_TEST = "tests/api/test_tenants.py"


def tenant_row() -> Row:
    """Every route tried with no key, a wrong key and another tenant's key."""
    print(f"running {TENANT_TEST} ...", flush=True)
    passed, failed, last = _pytest(TENANT_TEST)
    sys.path.insert(0, str(ROOT))
    from tests.api.test_tenants import CALLERS, NON_API_ROUTES, ROUTE_CASES, attempts_per_caller

    requests = attempts_per_caller()
    figure = (
        f"{len(ROUTE_CASES)} API routes and {len(NON_API_ROUTES)} other paths, {requests} "
        f"requests against another tenant's collections, documents, jobs and chats, each "
        f"sent with {len(CALLERS)} keys (none, wrong, other tenant): "
        f"{requests * len(CALLERS)} tried; {passed} tests passed, {failed} failed ({last})"
    )
    target = "0 cross-tenant reads or writes (404 like an unknown id; 401 without a valid key)"
    return ("tenants: keys limited to collections", figure, target, failed == 0 and passed > 0)


def injection_rows(generator: str, embedding: str) -> list[Row]:
    """The injection corpus with the default "not found" gate, then with it off."""
    import tempfile

    from eval.reliability.injection import figure, load_corpus, run_injections, summarize
    from rag.settings import load_settings

    rows: list[Row] = []
    attempts = load_corpus()
    for open_gate in (False, True):
        print(f"injection corpus, generator {generator}, gate open: {open_gate} ...", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(
                data_dir=Path(tmp),
                generator={"backend": generator},
                embedding={"model": embedding},
            )
            summary = summarize(run_injections(settings, attempts, open_gate=open_gate))
        name = "prompt injection corpus, canary in the system prompt" + (
            " ('not found' gate off: every attempt generated)" if open_gate else ""
        )
        ok = summary["leaked"] == 0 and summary["controls_flagged"] == 0
        rows.append((name, figure(summary, generator), "0 canary leaks, 0 controls flagged", ok))
    return rows


def print_table(rows: list[Row]) -> None:
    """The Markdown table the README quotes."""
    print("\n### Reliability\n")
    print("| test | figure | target | met |")
    print("|---|---|---|---|")
    for name, figure, target, ok in rows:
        print(f"| {name} | {figure} | {target} | {'yes' if ok else 'no'} |")


def main(argv: list[str] | None = None) -> int:
    """Run every part, print the table; exit 1 if any target is missed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0, help="per load run")
    parser.add_argument("--clients", type=int, nargs="+", default=[16, 64])
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["faults", "load", "tenants", "injection"],
        help="run only these parts",
    )
    parser.add_argument("--injection-generator", default="transformers")
    parser.add_argument("--injection-embedding", default="bundled")
    args = parser.parse_args(argv)
    parts = set(args.only or ["faults", "load", "tenants", "injection"])
    rows: list[Row] = []
    for name, (path, target) in PARTS.items() if "faults" in parts else ():
        print(f"running {path} ...", flush=True)
        passed, failed, last = _pytest(path)
        figure = f"{passed} tests passed, {failed} failed ({last})"
        if path.endswith("test_crash.py") and passed:
            figure = f"{_kill_points()} CLI kill points survived; {figure}"
        rows.append((name, figure, target, failed == 0 and passed > 0))
    for clients in args.clients if "load" in parts else ():
        print(f"load: {clients} clients for {args.seconds:g} s ...", flush=True)
        r = run_load(clients, args.seconds, 200, "hashing:256")
        figure = (
            f"{r['requests']} requests, {r['errors']} errors, p50 {r['p50_ms']:.0f} ms, "
            f"p95 {r['p95_ms']:.0f} ms, {r['uploads']} uploads, {r['deletes']} deletes, "
            f"{r['lost']} lost, {r['stuck']} stuck, consistent: {r['consistent']}"
        )
        ok = r["errors"] == r["lost"] == r["stuck"] == 0 and r["consistent"]
        rows.append((f"mixed load, {clients} loopback clients", figure, "0 errors, 0 lost", ok))
    if "tenants" in parts:
        rows.append(tenant_row())
    if "injection" in parts:
        rows.extend(injection_rows(args.injection_generator, args.injection_embedding))
    print_table(rows)
    return 0 if all(ok for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
