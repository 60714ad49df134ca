"""Kill -9 at every point of ``rag migrate``; the target is empty or whole, and a rerun works.

The real CLI runs in a child process that SIGKILLs itself the Nth time it
reaches a ``migrate.*`` point (``rag.faults``: by progress, never by clock).
Killed before the target's commit, the target holds no rows and the copy runs
again; killed after it, the target is complete and consistent once opened
(its normal start-up recovery), and a rerun is refused because it holds data.
Either way the source is untouched and, in the end, the target equals it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from cli.main import app
from ingest.service import build_ingest_service
from rag.db.copy import COPIED_TABLES
from rag.db.models import ChatMessage, ChatSession, IndexJournal
from rag.faults import ENV_VAR, KILL_POINTS
from rag.services import build_services
from rag.settings import Settings
from tests.conftest import fast_settings
from tests.rag.test_copy_kb import CHINESE, ENGLISH, assert_same_results, results, rows

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RAG = [sys.executable, "-m", "cli.main"]
MODEL = "hashing:256"
# Two rows a batch: the english collection's 3 chunks take two batches, the chinese one's 2 one.
BATCH_ROWS = "2"
DOCUMENTS = len(ENGLISH) + len(CHINESE)
# Killed at these points the target's transaction never committed.
BEFORE_COMMIT = {"migrate.originals", "migrate.batch"}

# (kill point, pass) per target. The last passes are the last document's original
# and the last batch of the last collection.
EMBEDDED_PLAN: list[tuple[str, int]] = [
    ("migrate.originals", 1),
    ("migrate.originals", DOCUMENTS),
    ("migrate.batch", 1),
    ("migrate.batch", 2),
    ("migrate.sql_done", 1),
    ("migrate.flushed", 1),
]
POSTGRES_PLAN: list[tuple[str, int]] = [
    ("migrate.originals", 2),
    ("migrate.batch", 1),
    ("migrate.batch", 3),
    ("migrate.sql_done", 1),
    ("migrate.flushed", 1),
]


@dataclass(frozen=True)
class Source:
    """An embedded knowledge base with two collections and a chat, and what it held when built."""

    settings: Settings
    rows: dict[str, list]
    results: dict[tuple[str, str], list[tuple[int, float]]]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    settings = fast_settings(tmp_path_factory.mktemp("migrate-crash") / "source")
    services = build_services(settings)
    try:
        ingest = build_ingest_service(services)
        for name, body in ENGLISH.items():
            ingest.ingest_bytes(body.encode(), name, collection="english")
        for name, body in CHINESE.items():
            ingest.ingest_bytes(body.encode(), name, collection="chinese")
        with services.kb.sessions.begin() as session:
            chat = ChatSession(collections=["english"])
            session.add(chat)
            session.flush()
            session.add(ChatMessage(session_id=chat.id, role="user", content="What is green tea?"))
        held = rows(services)
        assert [len(held["chunks"])] == [5], "the plans' pass numbers assume 5 chunks"
        return Source(settings, held, results(services))
    finally:
        services.close()


def _env(data_dir: Path, database_url: str | None = None, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "RAG_DATA_DIR": str(data_dir),
        "RAG_EMBEDDING__MODEL": MODEL,
        "RAG_GENERATOR__BACKEND": "extractive",
        **extra,
    }
    env.pop(ENV_VAR, None)
    env.pop("RAG_DATABASE_URL", None)
    if database_url:
        env["RAG_DATABASE_URL"] = database_url
    return env


def _migrate_args(target_url: str, target_dir: Path) -> list[str]:
    return [
        "migrate",
        "--to",
        target_url,
        "--to-data-dir",
        str(target_dir),
        "--batch-rows",
        BATCH_ROWS,
        "--json",
    ]


def _held_rows(settings: Settings) -> dict[str, int]:
    """Rows of every copied table and of the index journal, opened as the next process would."""
    services = build_services(settings)
    try:
        with services.kb.sessions() as session:
            return {
                table.name: int(session.scalar(select(func.count()).select_from(table)) or 0)
                for table in (*COPIED_TABLES, IndexJournal.__table__)
            }
    finally:
        services.close()


def _assert_source_unchanged(source: Source) -> None:
    services = build_services(source.settings)
    try:
        assert all(c.consistent for c in services.kb.check())
        assert rows(services) == source.rows
    finally:
        services.close()


def _assert_target_equals_source(source: Source, settings: Settings) -> None:
    services = build_services(settings)
    try:
        checks = services.kb.check()
        assert {c.collection for c in checks} == {"english", "chinese"}
        assert all(c.consistent for c in checks), [c.to_dict() for c in checks]
        assert rows(services) == source.rows
        assert_same_results(source.results, results(services))
        for doc_id, *_ in source.rows["documents"]:
            assert services.kb.document_bytes(doc_id)  # every original came along
    finally:
        services.close()


def _doctor(settings: Settings, env: dict[str, str]) -> dict[str, Any]:
    """``rag doctor --json`` on the target (its start-up recovery first)."""
    doctor = CliRunner().invoke(app, ["doctor", "--json"], env=env)
    assert doctor.exit_code == 0, doctor.output
    return json.loads(doctor.stdout)


def _kill_and_rerun(
    source: Source,
    point: str,
    nth: int,
    target_url: str,
    target_dir: Path,
    target_settings: Settings,
    **extra_env: str,
) -> None:
    args = _migrate_args(target_url, target_dir)
    source_env = _env(source.settings.data_dir, **extra_env)
    killed = subprocess.run(
        [*RAG, *args], env={**source_env, ENV_VAR: f"{point}:{nth}"}, capture_output=True
    )
    assert killed.returncode == -signal.SIGKILL, (
        f"{point}:{nth}: the kill point was never reached (exit {killed.returncode}); "
        f"stderr: {killed.stderr[-2000:]!r}"
    )
    _assert_source_unchanged(source)

    if point in BEFORE_COMMIT:
        held = _held_rows(target_settings)
        assert not any(held.values()), (point, nth, held)
    else:
        # Committed: whole and consistent once opened, before any rerun.
        report = _doctor(target_settings, _env(target_dir, target_url, **extra_env))
        assert report["consistent"] is True
        assert {c["collection"] for c in report["collections"]} == {"english", "chinese"}
        _assert_target_equals_source(source, target_settings)

    rerun = CliRunner().invoke(app, args, env=source_env)
    if point in BEFORE_COMMIT:
        assert rerun.exit_code == 0, rerun.output  # not refused: nothing was committed
        body = json.loads(rerun.stdout)
        assert body["consistent"] is True
        assert (body["documents"], body["chunks"]) == (DOCUMENTS, len(source.rows["chunks"]))
    else:
        assert rerun.exit_code == 2, rerun.output  # refused: the target holds the copy
        assert "already holds 2 collections" in rerun.stderr
    _assert_target_equals_source(source, target_settings)
    _assert_source_unchanged(source)


def test_plans_cover_every_migrate_kill_point() -> None:
    marked = {point for point in KILL_POINTS if point.startswith("migrate.")}
    assert {point for point, _ in EMBEDDED_PLAN} == marked
    assert {point for point, _ in POSTGRES_PLAN} == marked


@pytest.mark.parametrize(("point", "nth"), EMBEDDED_PLAN)
def test_sigkill_during_migrate_to_sqlite(
    source: Source, tmp_path: Path, point: str, nth: int
) -> None:
    target_dir = tmp_path / "target"
    target_url = f"sqlite:///{target_dir / 'rag.db'}"
    _kill_and_rerun(
        source,
        point,
        nth,
        target_url,
        target_dir,
        fast_settings(target_dir, database_url=target_url),
    )


@pytest.fixture
def hnsw_target(pg_url: str, tmp_path: Path) -> Iterator[tuple[str, Path, Settings]]:
    """A fresh PostgreSQL database whose collections get an HNSW graph at checkpoint."""
    target_dir = tmp_path / "target"
    yield (
        pg_url,
        target_dir,
        fast_settings(target_dir, database_url=pg_url, index={"vector_kind": "hnsw"}),
    )


@pytest.mark.parametrize(("point", "nth"), POSTGRES_PLAN)
def test_sigkill_during_migrate_to_postgres(
    source: Source, hnsw_target: tuple[str, Path, Settings], point: str, nth: int
) -> None:
    target_url, target_dir, target_settings = hnsw_target
    _kill_and_rerun(
        source,
        point,
        nth,
        target_url,
        target_dir,
        target_settings,
        RAG_INDEX__VECTOR_KIND="hnsw",
    )
    if point not in BEFORE_COMMIT:
        # The kill skipped the HNSW build; the next checkpoint (a server's idle one) makes it.
        services = build_services(target_settings)
        try:
            assert services.kb.checkpoint() == 2
            assert all(c.consistent for c in services.kb.check())
        finally:
            services.close()
