"""Mixed load on a live `rag serve`: uploads, deletes, questions and listings from N clients.

Each client is a thread with its own ``httpx.Client`` on loopback. It loops
until the time budget or its request budget is spent (both bounded), picking
an action by a fixed seeded schedule: ask 60%, upload a small unique text 20%,
delete one of its own ready documents 10%, list documents 10%. Afterwards
every document a client uploaded and did not delete must be ``ready`` (none
lost), and ``rag doctor`` must find SQL, FAISS and BM25 consistent after a
clean shutdown.

An error is any transport failure, any 5xx, and any 4xx the action cannot
legitimately get (a 404 for a delete that races another delete of the same
document is not one: each client deletes only its own documents).

Run: ``python -m eval.reliability.load --clients 16 64 --seconds 30``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import httpx

from api.live_server import ServerProcess

QUESTIONS = [
    "How do solar panels produce electricity?",
    "What stores surplus energy for the night?",
    "绿茶和乌龙茶有什么区别？",
    "Which device turns direct current into alternating current?",
    "风力发电机的功率是多少？",
]
WORDS = "solar wind battery inverter grid storage panel energy current cell 电池 风力 储能".split()


@dataclass
class ClientStats:
    """What one client did and saw."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    uploaded: dict[str, str] = field(default_factory=dict)  # job id -> file name
    deleted: set[str] = field(default_factory=set)  # document ids


def _document_text(rng: random.Random, client: int, n: int) -> bytes:
    words = " ".join(rng.choices(WORDS, k=120))
    return f"Client {client} note {n} marker c{client}n{n}. {words}.".encode()


def _client(url: str, number: int, deadline: float, max_requests: int, stats: ClientStats) -> None:
    rng = random.Random(number)
    ready: list[str] = []
    with httpx.Client(base_url=url, timeout=120) as http:
        for n in range(max_requests):
            if time.monotonic() > deadline:
                break
            roll = rng.random()
            started = time.perf_counter()
            try:
                if roll < 0.6:
                    response = http.post("/ask", json={"question": rng.choice(QUESTIONS)})
                    ok = response.status_code == 200
                elif roll < 0.8:
                    name = f"c{number}-{n}.txt"
                    response = http.post(
                        "/documents",
                        files=[("files", (name, _document_text(rng, number, n), "text/plain"))],
                    )
                    ok = response.status_code == 202
                    if ok:
                        stats.uploaded[response.json()["jobs"][0]["job_id"]] = name
                elif roll < 0.9:
                    ready += _finished_documents(http, stats, ready)
                    if not ready:
                        continue
                    doc_id = ready.pop(rng.randrange(len(ready)))
                    response = http.delete(f"/documents/{doc_id}")
                    ok = response.status_code == 200
                    if ok:
                        stats.deleted.add(doc_id)
                else:
                    response = http.get("/documents", params={"limit": 20})
                    ok = response.status_code == 200
            except httpx.TransportError as exc:
                stats.errors.append(f"transport: {type(exc).__name__}")
                continue
            stats.latencies.append(time.perf_counter() - started)
            if not ok:
                stats.errors.append(
                    f"{response.request.method} {response.request.url.path} "
                    f"{response.status_code}: {response.text[:200]}"
                )


def _finished_documents(http: httpx.Client, stats: ClientStats, known: list[str]) -> list[str]:
    """Ids of this client's uploads whose jobs succeeded and that are not yet known."""
    found = []
    for job_id in list(stats.uploaded):
        job = http.get(f"/jobs/{job_id}").json()
        doc_id = job.get("document_id")
        if job.get("status") == "succeeded" and doc_id and doc_id not in known:
            if doc_id not in stats.deleted:
                found.append(doc_id)
    return found


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def run_load(clients: int, seconds: float, max_requests: int, embedding: str) -> dict:
    """One bounded mixed-load run on a fresh data directory; returns its figures."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "RAG_DATA_DIR": tmp,
            "RAG_EMBEDDING__MODEL": embedding,
            "RAG_GENERATOR__BACKEND": "extractive",
            "RAG_API__RATE_LIMIT_PER_MINUTE": "0",
        }
        server = ServerProcess(env)
        stats = [ClientStats() for _ in range(clients)]
        try:
            deadline = time.monotonic() + seconds
            threads = [
                threading.Thread(target=_client, args=(server.url, i, deadline, max_requests, s))
                for i, s in enumerate(stats)
            ]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
            lost, stuck = _lost_documents(server.url, stats)
        finally:
            server.stop()
        doctor = subprocess.run(
            [sys.executable, "-m", "cli.main", "doctor", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        consistent = doctor.returncode == 0 and json.loads(doctor.stdout)["consistent"]
    latencies = [x for s in stats for x in s.latencies]
    errors = [e for s in stats for e in s.errors]
    return {
        "clients": clients,
        "seconds": elapsed,
        "requests": len(latencies) + len(errors),
        "errors": len(errors),
        "error_examples": errors[:5],
        "p50_ms": _percentile(latencies, 0.5) * 1000,
        "p95_ms": _percentile(latencies, 0.95) * 1000,
        "uploads": sum(len(s.uploaded) for s in stats),
        "deletes": sum(len(s.deleted) for s in stats),
        "lost": lost,
        "stuck": stuck,
        "consistent": consistent,
    }


def _lost_documents(url: str, stats: list[ClientStats], wait_s: float = 300.0) -> tuple[int, int]:
    """(lost, stuck): uploads not deleted that are not ready once their jobs end."""
    lost = stuck = 0
    deadline = time.monotonic() + wait_s
    with httpx.Client(base_url=url, timeout=60) as http:
        for client in stats:
            for job_id in client.uploaded:
                while True:
                    job = http.get(f"/jobs/{job_id}").json()
                    if job["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                doc_id = job.get("document_id")
                if job["status"] not in ("succeeded", "failed"):
                    stuck += 1
                elif doc_id in client.deleted:
                    continue
                elif job["status"] != "succeeded":
                    lost += 1
                elif http.get(f"/documents/{doc_id}").json().get("status") != "ready":
                    lost += 1
    return lost, stuck


def main(argv: list[str] | None = None) -> list[dict]:
    """Print one row per client count; returns the rows."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--max-requests", type=int, default=200, help="per client")
    parser.add_argument("--embedding", default="hashing:256", help="embedding model")
    args = parser.parse_args(argv)
    rows = [run_load(n, args.seconds, args.max_requests, args.embedding) for n in args.clients]
    print("\n### Mixed load on a live server (uploads, deletes, questions, listings)\n")
    print(
        "| clients | requests | errors | p50 | p95 | uploads | deletes | lost | stuck "
        "| consistent | target |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['clients']} | {r['requests']} | {r['errors']} | {r['p50_ms']:.0f} ms | "
            f"{r['p95_ms']:.0f} ms | {r['uploads']} | {r['deletes']} | {r['lost']} | "
            f"{r['stuck']} | {'yes' if r['consistent'] else 'NO'} | 0 errors, 0 lost |"
        )
        for example in r["error_examples"]:
            print(f"  error: {example}")
    return rows


if __name__ == "__main__":
    sys.exit(0 if all(r["errors"] == r["lost"] == 0 and r["consistent"] for r in main()) else 1)
