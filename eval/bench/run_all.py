"""Run every benchmark in ``eval/bench`` in turn; each prints Markdown tables with targets.

Usage: ``python -m eval.bench.run_all [--quick] [--only NAME ...] [--out FILE] [--readme README]``

Each benchmark runs in its own Python process (``python -m eval.bench.NAME``)
so one's memory, threads and loaded models cannot slow the next, and a
failing or missing one is reported while the others still run. The full run
takes about an hour on 2 cores (bench_ingest alone half of it); ``--quick``
(small sizes, the hashing embedder, tiny generations) about 2 minutes and only
proves each one runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from eval.bench.common import ROOT, fmt_s, machine_note
from eval.bench.report import machine_line, splice_readme, write_report

# In the order they run; a missing module is skipped with a note.
BENCHMARKS = (
    "bench_indexes",
    "bench_ingest",
    "bench_ocr",
    "bench_upload",
    "bench_query",
    "bench_api",
    "bench_postgres",
    "bench_generation",
)

# Small configurations for --quick, for benchmarks that have no --quick flag of their own.
QUICK_ARGS: dict[str, list[str]] = {
    # Sized to stay inside --quick's 120 s per benchmark (about 50 s on an idle host).
    "bench_postgres": ["--quick", "--queries", "5", "--sizes", "600"],
    "bench_indexes": ["--sizes", "2000", "--queries", "20", "--reference-queries", "5"],
    "bench_generation": [
        "--dtypes",
        "float32",
        "--prompt-tokens",
        "200",
        "--new-tokens",
        "16",
        "--repeats",
        "1",
    ],
}


# Full runs sized so that `make bench` stays within about 20 minutes on 2 cores.
FULL_ARGS: dict[str, list[str]] = {
    "bench_ingest": ["--scifact-docs", "400"],
    "bench_generation": ["--repeats", "1"],
}


# Benchmarks that need longer than the default --timeout in a full run (seconds).
FULL_TIMEOUTS: dict[str, float] = {
    # 28 minutes on a quiet 2-core AVX2 host (2026-12-02): in-process rows, then
    # `rag ingest` of 256 + 2,000 files, each next to the raw embedder twice.
    "bench_ingest": 2700.0,
    # The REST folder upload, then a 100k-chunk data folder and a 100-page PDF.
    "bench_upload": 1800.0,
    # About 9 minutes on 2 cores with the SciFact knowledge base cached, 10-15 more to build it.
    "bench_postgres": 2400.0,
}


def module_exists(name: str) -> bool:
    """Whether ``eval.bench.NAME`` can be imported (checked without importing it)."""
    return importlib.util.find_spec(f"eval.bench.{name}") is not None


def command(name: str, quick: bool) -> list[str]:
    """The command line running one benchmark."""
    args = QUICK_ARGS.get(name, ["--quick"]) if quick else FULL_ARGS.get(name, [])
    return [sys.executable, "-m", f"eval.bench.{name}", *args]


def _run_one(argv: list[str], limit_s: float, out: list[str]) -> str:
    """Run one benchmark, echoing its stdout and keeping it in ``out``; its outcome."""
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    timer = threading.Timer(limit_s, process.kill)
    timer.start()
    try:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            # One level down in the report: it sits under a section of its own.
            out.append("#" + line if line.startswith("#") else line)
        returncode = process.wait()
    finally:
        timed_out = not timer.is_alive()
        timer.cancel()
    if timed_out and returncode != 0:
        return f"stopped after {limit_s:.0f} s"
    return "ok" if returncode == 0 else f"failed (exit {returncode})"


def run(
    names: Sequence[str], quick: bool, timeout_s: float, out: list[str] | None = None
) -> list[tuple[str, str, float]]:
    """Run ``names`` in order; (name, outcome, seconds) for each.

    Args:
        names: Benchmark module names (``eval.bench.NAME``).
        quick: Use the small smoke configurations.
        timeout_s: Seconds allowed per benchmark (longer for those in FULL_TIMEOUTS).
        out: Receives the Markdown printed (the benchmarks' stdout and the notes).
    """
    out = [] if out is None else out

    def say(text: str) -> None:
        print(text, flush=True)
        out.append(text + "\n")

    outcomes = []
    for name in names:
        if not module_exists(name):
            say(f"<!-- -m eval.bench.{name} -->\n")
            say(f"> {name}: not present in eval/bench, skipped.\n")
            outcomes.append((name, "missing", 0.0))
            continue
        argv = command(name, quick)
        say(f"<!-- {' '.join(argv[1:])} -->\n")
        say(f"Measured {machine_line()}.\n")
        start = time.perf_counter()
        limit_s = timeout_s if quick else max(timeout_s, FULL_TIMEOUTS.get(name, 0.0))
        outcome = _run_one(argv, limit_s, out)
        seconds = time.perf_counter() - start
        say(f"\n> {name}: {outcome} in {fmt_s(seconds)}.\n")
        outcomes.append((name, outcome, seconds))
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; exit status 1 when any present one failed."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke configurations")
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", choices=BENCHMARKS, help="run only these benchmarks"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds allowed per benchmark (default 600, 120 with --quick)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="also write the run's Markdown to this file"
    )
    parser.add_argument(
        "--readme",
        type=Path,
        default=None,
        help="replace this README's generated benchmark section with the run's Markdown",
    )
    args = parser.parse_args(argv)
    names = [n for n in BENCHMARKS if not args.only or n in args.only]
    timeout_s = args.timeout or (120.0 if args.quick else 600.0)
    started = time.perf_counter()
    out: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        out.append(text + "\n")

    title = "Benchmarks" + (" (quick)" if args.quick else "")
    only = f" (`--only {' '.join(names)}`)" if args.only else ""
    say(f"**{title}{only}.** Measured {machine_line()}. {machine_note()}\n")
    outcomes = run(names, args.quick, timeout_s, out)
    say("**Benchmark runs**\n\n| benchmark | outcome | time |\n|---|---|---|")
    for name, outcome, seconds in outcomes:
        say(f"| {name} | {outcome} | {fmt_s(seconds) if seconds else '–'} |")
    say(f"\nTotal {fmt_s(time.perf_counter() - started)}. {machine_note()}")
    markdown = "".join(out)
    if args.out is not None:
        write_report(markdown, args.out)
    if args.readme is not None:
        splice_readme(markdown, args.readme, BENCHMARKS)
        print(f"\n{args.readme}: this run's benchmarks replaced in its section.", flush=True)
    failed = [o for _, o, _ in outcomes if o not in ("ok", "missing")]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
