"""Kill -9 at named points of the write path; every restart finds the stores consistent.

Kills are placed by progress, not by clock (``rag.faults``): the CLI process
sends itself SIGKILL the Nth time it reaches a point, so every kill lands
inside the work on a fast or a slow machine, and the test fails if one does not.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from rag.db.models import ChunkRow
from rag.faults import ENV_VAR, KILL_POINTS
from rag.services import build_services
from tests.conftest import fast_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RAG = [sys.executable, "-m", "cli.main"]
NOTES = 3

# (command, kill point, pass). Runs share one data directory, so each starts
# from what the previous kill left behind (and recovers it first).
PLAN: list[tuple[str, str, int]] = [
    ("ingest", "document.begun", 1),
    ("ingest", "embed.batch", 1),
    ("ingest", "embed.batch", 3),
    ("ingest", "commit.sql_done", 1),
    ("doctor", "replay.entry", 1),
    ("ingest", "commit.indexed", 1),
    ("ingest", "persist.between_files", 1),
    ("ingest", "persist.before_prune", 1),
    ("ingest", "document.begun", 3),
    ("ingest", "commit.sql_done", 2),
    ("ingest", "commit.indexed", 2),
    ("ingest", "persist.between_files", 2),
    ("ingest", "persist.before_prune", 2),
    ("delete", "delete.sql_done", 1),
    ("delete", "persist.between_files", 1),
    ("delete", "persist.before_prune", 1),
    ("ingest", "commit.sql_done", 3),
    ("doctor", "persist.between_files", 1),
    ("ingest", "embed.batch", 5),
    # Re-embedding with the other hashing model: killed before its SQL commit the
    # collection keeps the old model whole, after it the new one.
    ("reembed", "reembed.batch", 2),
    ("reembed", "reembed.built", 1),
    ("reembed", "reembed.sql_done", 1),
    ("reembed", "persist.between_files", 1),
    ("collection", "collection_delete.sql_done", 1),
    ("ingest", "commit.sql_done", 1),
    ("ingest", "embed.batch", 2),
]


def _marker(kind: str, *numbers: int) -> str:
    """A word made of letters only, so the tokeniser keeps it one term found in one file.

    (Digits would be cut off as terms of their own, which every note repeats.) It
    ends in "x", which the Snowball stemmer leaves alone: "bigmarkerce" (step 24)
    would otherwise stem to "bigmarkerc" (step 2) and find the other file.
    """
    letters = "q".join("".join(chr(97 + int(d)) for d in str(n)) for n in numbers)
    return f"{kind}marker{letters}x"


def _corpus(folder: Path, step: int) -> list[str]:
    """Fresh files for one step (small ones, then a large one for many embedding batches).

    A group of 16 chunks is committed in one transaction: notes of about 7
    chunks put the first two in one commit, the third in the next and the
    large file (named to sort last) in a third, so every ``commit.*`` point
    is reached three times in one ``rag ingest``.

    Returns the markers that make each file findable by keyword.
    """
    folder.mkdir(parents=True)
    rng = random.Random(step)
    words = "solar wind battery inverter grid storage panel energy current cell".split()
    big = " ".join(f"Sentence {i} says {' '.join(rng.choices(words, k=12))}." for i in range(1_500))
    (folder / f"zbig{step:02d}.txt").write_text(f"{_marker('big', step)}. {big}")
    markers = [_marker("big", step)]
    for n in range(NOTES):
        text = " ".join(f"Note {n}.{i}: {' '.join(rng.choices(words, k=10))}." for i in range(95))
        marker = _marker("note", step, n)
        (folder / f"note{step:02d}-{n}.txt").write_text(f"{marker}. {text}")
        markers.append(marker)
    return markers


# The two models re-embedding alternates between (64 is every other command's).
MODELS = {"hashing-64": "hashing:64", "hashing-32": "hashing:32"}


def _env(data: Path, kill: str | None = None, model: str = "hashing:64") -> dict[str, str]:
    env = {
        **os.environ,
        "RAG_DATA_DIR": str(data),
        "RAG_EMBEDDING__MODEL": model,
        "RAG_GENERATOR__BACKEND": "extractive",
        "RAG_INGEST__EMBED_BATCH_CHUNKS": "16",
        # Checkpoints every second write, so kills inside index saves land mid-run.
        "RAG_INDEX__CHECKPOINT_ENTRIES": "2",
    }
    env.pop(ENV_VAR, None)
    if kill:
        env[ENV_VAR] = kill
    return env


def _assert_consistent(data: Path, step: object) -> list[str]:
    """Open the knowledge base as the next process would; return the ready document ids."""
    services = build_services(fast_settings(data, embedding={"model": "hashing:64"}))
    try:
        checks = services.kb.check()
        assert all(c.consistent for c in checks), (step, [c.to_dict() for c in checks])
        docs, _ = services.kb.list_documents()
        for doc in docs:
            assert doc.status in ("ready", "failed"), (step, doc)
            if doc.status == "failed":
                assert doc.error, (step, doc)
            stored = len(services.kb.document_chunks(doc.id))
            assert stored == (doc.chunks if doc.status == "ready" else 0), (step, doc)
        return [d.id for d in docs if d.status == "ready"]
    finally:
        services.close()


def _recorded_model(data: Path, step: object) -> str:
    """The default collection's model, checked to be whole: SQL vectors and index agree with it."""
    services = build_services(fast_settings(data, embedding={"model": "hashing:64"}))
    try:
        info = services.kb.get_collection("default")
        assert info.embedding_model in MODELS, (step, info)
        dim = int(info.embedding_model.removeprefix("hashing-"))
        assert info.embedding_dim == dim, (step, info)
        with services.kb.sessions() as session:
            sizes = set(session.scalars(select(func.length(ChunkRow.embedding))).all())
        assert sizes == {dim * 4}, (step, sizes)  # float32: never two models' vectors mixed
        indexes = services.kb.store.loaded(info.id)
        assert indexes.vectors is not None and indexes.vectors.dim == dim, step
        return info.embedding_model
    finally:
        services.close()


def _model_name(spec: str) -> str:
    return next(name for name, value in MODELS.items() if value == spec)


def _command(kind: str, corpus: Path, ready: list[str], model: str = "hashing:64") -> list[str]:
    if kind == "reembed":
        other = next(spec for spec in MODELS.values() if spec != model)
        return [*RAG, "collections", "reembed", "default", "--model", other, "--json"]
    if kind == "ingest":
        return [*RAG, "ingest", str(corpus), "--json"]
    if kind == "doctor":
        return [*RAG, "doctor", "--json"]
    if kind == "delete":
        assert ready, "nothing ready to delete"
        return [*RAG, "docs", "delete", ready[0], "--json"]
    return [*RAG, "collections", "delete", "default", "--json"]


def _leave_unreplayed_journal(corpus: Path, data: Path) -> None:
    """A kill after the SQL commit leaves journal entries newer than the index files."""
    proc = subprocess.run(
        _command("ingest", corpus, []), env=_env(data, "commit.sql_done:1"), capture_output=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


def test_plan_covers_twenty_points_and_every_marked_point() -> None:
    assert len(set(PLAN)) >= 20
    # The migrate.* points are rag migrate's, killed in tests/rag/test_migrate_crash.py.
    assert {point for _, point, _ in PLAN} == {
        point for point in KILL_POINTS if not point.startswith("migrate.")
    }


def test_sigkill_at_every_point_leaves_consistent_stores(tmp_path: Path) -> None:
    data = tmp_path / "data"
    folders: dict[Path, list[str]] = {}
    ready: list[str] = []
    model = "hashing:64"  # the default collection's, which every command must use
    for number, step in enumerate(PLAN):
        kind, point, nth = step
        corpus = tmp_path / f"corpus{number:02d}"
        if kind in ("ingest", "doctor"):
            folders[corpus] = _corpus(corpus, number)
        if kind == "doctor":
            # Replay happens on start only when the journal is ahead of the files.
            _leave_unreplayed_journal(corpus, data)
        proc = subprocess.run(
            _command(kind, corpus, ready, model),
            env=_env(data, f"{point}:{nth}", model),
            capture_output=True,
        )
        assert proc.returncode == -signal.SIGKILL, (
            f"{step}: the kill point was never reached (exit {proc.returncode}); "
            f"stderr: {proc.stderr[-2000:]!r}"
        )
        ready = _assert_consistent(data, step)
        if kind == "reembed":
            recorded = _recorded_model(data, step)
            # Before the SQL commit the old model stays; from it on, the new one.
            swapped = point not in ("reembed.batch", "reembed.built")
            assert (recorded != _model_name(model)) == swapped, step
            model = MODELS[recorded]
        elif kind == "collection":
            model = "hashing:64"  # the next ingest makes a new default collection
        doctor = subprocess.run(
            _command("doctor", corpus, ready), env=_env(data, model=model), capture_output=True
        )
        assert doctor.returncode == 0, (step, doctor.stdout[-2000:])

    # Ingest everything again: what was interrupted is added, what is ready stays.
    final = subprocess.run(
        [*RAG, "ingest", *map(str, folders), "--json"],
        env=_env(data, model=model),
        capture_output=True,
        timeout=600,
    )
    assert final.returncode == 0, final.stdout[-2000:]
    result = json.loads(final.stdout)
    assert len(result["documents"]) == len(folders) * (NOTES + 1) and result["failed"] == 0
    assert {d["status"] for d in result["documents"]} == {"ready"}
    _assert_consistent(data, "final")
    services = build_services(fast_settings(data, embedding={"model": "hashing:64"}))
    try:
        # Every document is wholly searchable: its marker finds it by keyword.
        for markers in folders.values():
            for marker in markers:
                hits = services.retriever().retrieve(marker, mode="sparse").hits
                assert hits and marker in hits[0].text.lower(), (marker, hits[:1])
    finally:
        services.close()
