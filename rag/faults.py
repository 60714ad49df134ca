"""Fault injection by progress: the process kills itself at the Nth pass through a named point.

Crash tests need kills that land inside the work whatever the machine's speed,
so the write path marks its dangerous moments with :func:`kill_point` and a
test sets ``RAG_FAULT_KILL_AT=point:N`` (several separated by commas) in the
environment of the process it starts. The Nth time that point is reached the
process sends itself SIGKILL: no ``finally``, no atexit, exactly like ``kill -9``.

Unset (always, outside tests) a kill point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

ENV_VAR = "RAG_FAULT_KILL_AT"

#: Every point the code marks, with where it is. Tests iterate over these.
KILL_POINTS: dict[str, str] = {
    "document.begun": "document row created and original bytes stored, nothing parsed",
    "embed.batch": "after each embedding batch of one document, before its commit",
    "commit.sql_done": "chunks and journal committed in SQL, indexes not yet updated",
    "commit.indexed": "in-memory indexes updated, index files not yet saved",
    "persist.between_files": "vector file written, BM25 file not yet written",
    "persist.before_prune": "both index files written, old files and journal not yet pruned",
    "delete.sql_done": "document rows deleted in SQL, indexes not yet updated",
    "replay.entry": "after each journal entry replayed in memory on start, before saving",
    "collection_delete.sql_done": "collection rows deleted in SQL, index files still on disk",
    "reembed.batch": "after each batch of new vectors computed aside, old index in use",
    "reembed.built": "new vector index built in memory, SQL still holds the old vectors",
    "reembed.sql_done": "new vectors and model committed in SQL, old index still in memory/files",
    "migrate.originals": "after each original copied to the target, its SQL transaction not begun",
    "migrate.batch": "after each batch of chunk rows inserted and staged, target uncommitted",
    "migrate.sql_done": "target's rows committed, its store's after-commit steps not yet run",
    "migrate.flushed": "target's store flushed, its checkpoint (HNSW build) not yet run",
}

_lock = threading.Lock()
_counts: dict[str, int] = {}
_plan: dict[str, int] | None = None


def _parse(spec: str) -> dict[str, int]:
    plan: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, count = part.partition(":")
        if name not in KILL_POINTS:
            raise ValueError(
                f"{ENV_VAR}: unknown kill point {name!r}; known: {sorted(KILL_POINTS)}"
            )
        plan[name] = int(count or 1)
        if plan[name] < 1:
            raise ValueError(f"{ENV_VAR}: the pass number must be >= 1, got {part!r}")
    return plan


def kill_point(name: str) -> None:
    """Mark a moment where a crash must leave the stores consistent."""
    global _plan
    if _plan is None:
        _plan = _parse(os.environ.get(ENV_VAR, ""))
    if not _plan or name not in _plan:
        return
    with _lock:
        _counts[name] = _counts.get(name, 0) + 1
        hit = _counts[name] == _plan[name]
    if hit:
        sys.stderr.write(f"fault injection: SIGKILL at {name} pass {_plan[name]}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def reset() -> None:
    """Forget the plan and the counts (re-read the environment on the next point)."""
    global _plan
    with _lock:
        _plan = None
        _counts.clear()


__all__ = ["ENV_VAR", "KILL_POINTS", "kill_point", "reset"]
