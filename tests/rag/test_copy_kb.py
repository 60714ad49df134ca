"""Copying an embedded knowledge base into PostgreSQL (``rag migrate``): rows, indexes, results."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from cli.main import app
from ingest.service import build_ingest_service
from rag.blobs import PrefixedBlobStore, SqlBlobStore
from rag.db.copy import (
    COPIED_TABLES,
    SKIPPED_TABLES,
    application_tables,
    check_copy,
    check_copy_allowed,
    copy_knowledge_base,
    open_knowledge_base,
)
from rag.db.models import ChatMessage, ChatSession, ChunkRow, Document, IngestJob, JobStatus
from rag.errors import Conflict, InvalidInput
from rag.services import Services, build_services
from rag.settings import Settings
from tests.conftest import fast_settings

pytestmark = pytest.mark.integration

ENGLISH = {
    "tea.txt": "Green tea is steamed or pan-fired soon after picking, which stops oxidation. "
    "Black tea is fully oxidised before it is dried, giving it a darker colour.",
    "rivers.txt": "The Nile and the Amazon are the longest rivers on Earth. The Amazon carries "
    "more water than any other river, draining much of South America.",
    "bread.txt": "Sourdough bread rises with wild yeast and lactic acid bacteria. A long "
    "fermentation gives the crumb its sour taste and open structure.",
}
CHINESE = {
    "puer.txt": "普洱茶属于黑茶，产于云南。普洱茶经过渥堆发酵，存放越久味道越醇厚。",
    "longjing.txt": "龙井茶是绿茶，产于杭州西湖。龙井茶采摘后杀青，保持了鲜绿的颜色和清香。",
}
DELETED = ("temporary.txt", "This note about volcanoes and lava was deleted later.")
QUERIES = (
    "How is green tea processed after picking?",
    "longest river",
    "sourdough fermentation yeast",
    "普洱茶属于哪一类茶？",
    "龙井茶产于哪里",
    "volcanoes lava",
)


@dataclass
class Source:
    """An embedded knowledge base with two collections, a deleted document and a chat."""

    settings: Settings
    services: Services
    deleted_id: str
    deleted_chunk_ids: tuple[int, ...]


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Source]:
    settings = fast_settings(tmp_path / "source")
    services = build_services(settings)
    ingest = build_ingest_service(services)
    for name, body in ENGLISH.items():
        ingest.ingest_bytes(body.encode(), name, collection="english")
    for name, body in CHINESE.items():
        ingest.ingest_bytes(body.encode(), name, collection="chinese")
    # The last one in: its chunks had the highest ids, which the target must not reuse.
    deleted = ingest.ingest_bytes(DELETED[1].encode(), DELETED[0], collection="english")
    deleted_ids = tuple(c.id for c in services.kb.document_chunks(deleted.document_id))
    services.kb.delete_document(deleted.document_id)
    with services.kb.sessions.begin() as session:
        chat = ChatSession(collections=["english"])
        session.add(chat)
        session.flush()
        session.add_all(
            [
                ChatMessage(session_id=chat.id, role="user", content="What is green tea?"),
                ChatMessage(
                    session_id=chat.id,
                    role="assistant",
                    content="Tea that is steamed soon after picking.",
                    citations=[{"chunk_id": 1}],
                ),
            ]
        )
        session.add(IngestJob(collection="english", filename="tea.txt", status="succeeded"))
    yield Source(settings, services, deleted.document_id, deleted_ids)
    services.close()


def migrate(source: Source, target_settings: Settings) -> tuple[dict, object]:
    """Copy ``source`` into ``target_settings``'s database; returns (report, check)."""
    src = open_knowledge_base(source.settings, "source")
    dst = open_knowledge_base(target_settings, "target")
    try:
        check_copy_allowed(src, dst)
        report = copy_knowledge_base(src, dst, batch_rows=2)
        return report.to_dict(), check_copy(src, dst)
    finally:
        src.close()
        dst.close()


def rows(services: Services) -> dict[str, list]:
    """What the knowledge base holds, by table, comparable across databases."""
    kb = services.kb
    with kb.sessions() as session:
        return {
            "collections": [
                (c.id, c.name, c.embedding_model, c.embedding_dim) for c in kb.list_collections()
            ],
            "documents": sorted(
                (
                    d.id,
                    d.collection_id,
                    d.filename,
                    d.sha256,
                    d.status,
                    d.chunk_count,
                    d.version,
                    utc(d.created_at),
                )
                for d in session.scalars(select(Document))
            ),
            "chunks": sorted(
                (c.id, c.document_id, c.ordinal, c.text, c.embedding, c.page_breaks)
                for c in session.scalars(select(ChunkRow))
            ),
            "chat": [
                (m.id, m.session_id, m.role, m.content, m.citations)
                for m in session.scalars(select(ChatMessage).order_by(ChatMessage.id))
            ],
            "jobs": sorted((j.id, j.status) for j in session.scalars(select(IngestJob))),
        }


def utc(moment: datetime) -> datetime:
    """SQLite gives back stored UTC times without their zone; PostgreSQL with it."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def results(services: Services) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """Top hits (ids and scores) of every query in every mode."""
    retriever = services.retriever()
    return {
        (query, mode): [
            (hit.chunk_id, hit.score)
            for hit in retriever.retrieve(query, top_k=5, mode=mode).hits  # type: ignore[arg-type]
        ]
        for query in QUERIES
        for mode in ("dense", "sparse", "hybrid")
    }


def assert_same_results(expected: dict, got: dict) -> None:
    assert got.keys() == expected.keys()
    for key, hits in expected.items():
        assert [i for i, _ in got[key]] == [i for i, _ in hits], key
        assert [s for _, s in got[key]] == pytest.approx([s for _, s in hits], abs=1e-5), key


def test_every_table_is_copied_or_skipped_knowingly() -> None:
    copied = {table.name for table in COPIED_TABLES}
    assert copied | SKIPPED_TABLES == application_tables()
    assert not copied & SKIPPED_TABLES


def test_migrate_to_postgres_keeps_rows_ids_and_results(
    source: Source, pg_url: str, tmp_path: Path
) -> None:
    expected_rows = rows(source.services)
    expected_results = results(source.services)
    assert any(hits for hits in expected_results.values())

    report, check = migrate(source, fast_settings(tmp_path / "target", database_url=pg_url))

    assert report["collections"] == 2
    assert report["documents"] == len(ENGLISH) + len(CHINESE)
    assert report["chunks"] == len(expected_rows["chunks"]) == report["indexed_chunks"]
    assert report["chat_sessions"] == 1 and report["chat_messages"] == 2
    assert report["ingest_jobs"] == 1
    assert report["originals"] == len(ENGLISH) + len(CHINESE)
    assert check.consistent, (check.source, check.target, check.differences)

    target = build_services(fast_settings(tmp_path / "target", database_url=pg_url))
    try:
        assert target.kb.store.name == "postgres"
        assert target.kb.check() and all(c.consistent for c in target.kb.check())
        assert rows(target) == expected_rows
        assert_same_results(expected_results, results(target))
        originals = PrefixedBlobStore(SqlBlobStore(target.kb.sessions), "files/")
        for doc_id, *_ in expected_rows["documents"]:
            stored = source.services.kb.originals.get(doc_id)
            assert originals.get(doc_id) == stored  # the blobs table, for every replica
            assert target.kb.document_bytes(doc_id) == stored
        assert not originals.exists(source.deleted_id)

        # Ids continue after the source's highest ever, the deleted document's chunks included.
        highest = max(i for i, *_ in expected_rows["chunks"])
        assert max(source.deleted_chunk_ids) > highest
        added = build_ingest_service(target).ingest_bytes(
            b"Oolong tea is partly oxidised.", "oolong.txt", collection="english"
        )
        new_ids = [c.id for c in target.kb.document_chunks(added.document_id)]
        assert min(new_ids) > max(source.deleted_chunk_ids)
        assert all(c.consistent for c in target.kb.check())
    finally:
        target.close()


def test_a_failed_copy_leaves_the_target_empty_and_can_run_again(
    source: Source, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag.store.postgres import PostgresSearchStore

    real_stage_add = PostgresSearchStore.stage_add
    calls = []

    def failing_stage_add(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 3:  # mid-way: rows and index entries of two batches are written
            raise RuntimeError("connection lost")
        return real_stage_add(self, *args, **kwargs)

    target_settings = fast_settings(tmp_path / "target", database_url=pg_url)
    monkeypatch.setattr(PostgresSearchStore, "stage_add", failing_stage_add)
    with pytest.raises(RuntimeError, match="connection lost"):
        migrate(source, target_settings)
    monkeypatch.setattr(PostgresSearchStore, "stage_add", real_stage_add)

    _, check = migrate(source, target_settings)  # not refused: nothing was committed
    assert check.consistent


def test_migrate_builds_the_targets_hnsw_indexes(source: Source, pg_url: str, tmp_path: Path):
    target_settings = fast_settings(
        tmp_path / "target", database_url=pg_url, index={"vector_kind": "hnsw"}
    )
    report, check = migrate(source, target_settings)
    assert report["indexes_built"] == 2  # one graph per collection, after the commit
    assert check.consistent
    target = build_services(target_settings)
    try:
        hits = target.retriever().retrieve("longest river", top_k=1, mode="dense").hits
        assert hits and hits[0].filename == "rivers.txt"
    finally:
        target.close()


def test_migrate_refuses_a_target_that_holds_data(
    source: Source, pg_url: str, tmp_path: Path
) -> None:
    target_settings = fast_settings(tmp_path / "target", database_url=pg_url)
    migrate(source, target_settings)
    with pytest.raises(Conflict, match="already holds 2 collections.*use an empty database"):
        migrate(source, target_settings)


def test_migrate_refuses_its_own_database_and_a_moving_source(source: Source) -> None:
    with pytest.raises(InvalidInput, match="target database is the source database"):
        migrate(source, source.settings)
    with source.services.kb.sessions.begin() as session:
        session.add(IngestJob(collection="english", filename="x.txt", status=JobStatus.RUNNING))
    other = fast_settings(source.settings.data_dir.parent / "other")
    with pytest.raises(Conflict, match="1 ingest jobs queued or running"):
        migrate(source, other)


def test_migrate_fills_any_store_the_same_way(source: Source, tmp_path: Path) -> None:
    """SQLite into SQLite in another data folder: the file store is built through the protocol."""
    expected_rows = rows(source.services)
    expected_results = results(source.services)
    target_settings = fast_settings(tmp_path / "copy")
    _, check = migrate(source, target_settings)
    assert check.consistent
    target = build_services(target_settings)
    try:
        assert target.kb.store.name == "files"
        assert rows(target) == expected_rows
        assert_same_results(expected_results, results(target))
    finally:
        target.close()


def test_cli_migrate_json_and_exit_codes(source: Source, pg_url: str, tmp_path: Path) -> None:
    env = {
        "RAG_DATA_DIR": str(source.settings.data_dir),
        "RAG_EMBEDDING__MODEL": "hashing:256",
        "RAG_GENERATOR__BACKEND": "extractive",
    }
    args = ["migrate", "--to", pg_url, "--to-data-dir", str(tmp_path / "target"), "--json"]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["consistent"] is True
    assert (body["collections"], body["documents"]) == (2, len(ENGLISH) + len(CHINESE))
    assert body["chunks"] > 0 and body["seconds"] >= 0
    assert body["source"]["consistent"] and body["target"]["consistent"]
    assert {c["collection"] for c in body["target"]["collections"]} == {"english", "chinese"}

    again = CliRunner().invoke(app, args, env=env)
    assert again.exit_code == 2
    assert "already holds 2 collections" in again.stderr

    itself = f"sqlite:///{source.settings.data_dir / 'rag.db'}"
    same = CliRunner().invoke(app, ["migrate", "--to", itself], env=env)
    assert same.exit_code == 2
    assert "target database is the source database" in same.stderr

    unreachable = "postgresql+psycopg://postgres@/no_such_db?host=/nonexistent"
    refused = CliRunner().invoke(app, ["migrate", "--to", unreachable], env=env)
    assert refused.exit_code == 2
    assert "cannot reach the target database" in refused.stderr
