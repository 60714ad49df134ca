"""``rag migrate`` from PostgreSQL: into an embedded knowledge base and into another server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import select, text
from typer.testing import CliRunner

from cli.main import app
from ingest.service import build_ingest_service
from rag.db.copy import check_copy, check_copy_allowed, copy_knowledge_base, open_knowledge_base
from rag.db.models import ChatMessage, ChatSession, IngestJob
from rag.services import Services, build_services
from rag.settings import Settings
from tests.conftest import fast_settings
from tests.rag.test_copy_kb import (
    CHINESE,
    DELETED,
    ENGLISH,
    assert_same_results,
    results,
    rows,
    utc,
)

pytestmark = pytest.mark.integration

# "auto" builds an HNSW graph for collections of more chunks than this: the
# English one (three chunks once the deleted document is gone), not the Chinese one.
HNSW_THRESHOLD = 2
INDEX = {"vector_kind": "auto", "hnsw_threshold": HNSW_THRESHOLD}


@dataclass
class Source:
    """A PostgreSQL knowledge base with two collections, a deleted document and a chat."""

    settings: Settings
    services: Services
    url: str
    deleted_id: str
    deleted_chunk_ids: tuple[int, ...]


def new_database(postgres_server: Any) -> str:
    """Another empty database (with pgvector) on the session's server, as ``pg_url`` makes."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres_server.psql(f"CREATE DATABASE {name};")
    socket_dir = postgres_server.get_uri().split("host=", 1)[1]
    url = f"postgresql+psycopg://postgres@/{name}?host={socket_dir}"
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
    engine.dispose()
    return url


@pytest.fixture
def source(pg_url: str, tmp_path: Path) -> Iterator[Source]:
    settings = fast_settings(tmp_path / "source", database_url=pg_url, index=INDEX)
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
    assert services.kb.checkpoint() == 1  # the English collection's graph
    assert hnsw_collections(pg_url) == {"english"}
    yield Source(settings, services, pg_url, deleted.document_id, deleted_ids)
    services.close()


def hnsw_collections(url: str) -> set[str]:
    """Names of the collections with a valid HNSW index on the database at ``url``."""
    from rag.store.postgres import PostgresSearchStore

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            named = conn.execute(text("SELECT id, name FROM collections")).all()
            return {
                name
                for cid, name in named
                if PostgresSearchStore._hnsw_indexes(conn, int(cid), valid_only=True)
            }
    finally:
        engine.dispose()


def pg_vectors(url: str) -> list[tuple[int, int, str]]:
    """The pgvector rows of a PostgreSQL store (float4 text is exact: shortest round trip)."""
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return [
                (int(r[0]), int(r[1]), str(r[2]))
                for r in conn.execute(
                    text(
                        "SELECT chunk_id, collection_id, embedding::text FROM chunk_vectors "
                        "ORDER BY chunk_id"
                    )
                )
            ]
    finally:
        engine.dispose()


def snapshot(services: Services) -> dict[str, Any]:
    """Every copied row (with chat sessions and job details), the originals and the hits."""
    held = rows(services)
    with services.kb.sessions() as session:
        held["chat_sessions"] = [
            (s.id, s.collections, utc(s.created_at))
            for s in session.scalars(select(ChatSession).order_by(ChatSession.id))
        ]
        held["job_details"] = sorted(
            (j.id, j.collection, j.filename, j.status) for j in session.scalars(select(IngestJob))
        )
    held["originals"] = {
        doc_id: services.kb.document_bytes(doc_id) for doc_id, *_ in held["documents"]
    }
    return held


def migrate(source: Source, target_settings: Settings) -> tuple[dict, Any]:
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


def cli_env(settings: Settings) -> dict[str, str]:
    """The environment of a `rag` command over ``settings``'s knowledge base."""
    return {
        "RAG_DATA_DIR": str(settings.data_dir),
        "RAG_DATABASE_URL": settings.resolved_database_url,
        "RAG_EMBEDDING__MODEL": "hashing:256",
        "RAG_GENERATOR__BACKEND": "extractive",
        "RAG_INDEX__VECTOR_KIND": INDEX["vector_kind"],
        "RAG_INDEX__HNSW_THRESHOLD": str(INDEX["hnsw_threshold"]),
    }


def assert_doctor_consistent(settings: Settings) -> None:
    result = CliRunner().invoke(app, ["doctor", "--json"], env=cli_env(settings))
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["consistent"] is True and body["repaired"] is False
    assert {c["collection"] for c in body["collections"]} == {"english", "chinese"}


def assert_copied(
    source: Source, target_settings: Settings, expected: dict[str, Any], hits: dict
) -> None:
    """The target holds what the source does, answers the same and gives fresh ids."""
    target = build_services(target_settings)
    try:
        assert all(c.consistent for c in target.kb.check())
        assert snapshot(target) == expected  # rows, ids, vector bytes, chats, jobs, originals
        assert_same_results(hits, results(target))
        assert not target.kb.originals.exists(source.deleted_id)

        # Ids continue after the source's highest ever, the deleted document's chunks included.
        assert max(source.deleted_chunk_ids) > max(i for i, *_ in expected["chunks"])
        ingest = build_ingest_service(target)
        added = ingest.ingest_bytes(
            b"Oolong tea is partly oxidised.", "oolong.txt", collection="english"
        )
        fresh = ingest.ingest_bytes("乌龙茶是半发酵茶。".encode(), "oolong.txt", collection="new")
        new_chunks = [c.id for c in target.kb.document_chunks(added.document_id)]
        assert min(new_chunks) > max(source.deleted_chunk_ids)
        collection_ids = {c.id for c in target.kb.list_collections()}
        assert max(collection_ids) > max(i for i, *_ in expected["collections"])
        assert fresh.document_id not in expected["originals"]
        with target.kb.sessions.begin() as session:
            chat = session.get(ChatSession, expected["chat_sessions"][0][0])
            assert chat is not None
            message = ChatMessage(session_id=chat.id, role="user", content="And oolong?")
            session.add(message)
            session.flush()
            assert message.id > max(i for i, *_ in expected["chat"])
        assert all(c.consistent for c in target.kb.check())
    finally:
        target.close()


def test_migrate_postgres_into_an_embedded_knowledge_base_through_the_cli(
    source: Source, tmp_path: Path
) -> None:
    """Scaling down: PostgreSQL into SQLite plus FAISS/BM25 files in a data folder of its own."""
    expected, hits = snapshot(source.services), results(source.services)
    source_vectors = pg_vectors(source.url)
    target_dir = tmp_path / "embedded"
    target_url = f"sqlite:///{target_dir / 'rag.db'}"
    args = ["migrate", "--to", target_url, "--to-data-dir", str(target_dir), "--json"]

    result = CliRunner().invoke(app, args, env=cli_env(source.settings))

    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert set(body) == {
        "source",
        "target",
        "collections",
        "documents",
        "chunks",
        "seconds",
        "consistent",
        "copied",
        "differences",
    }
    assert body["consistent"] is True and body["differences"] == []
    assert (body["collections"], body["documents"]) == (2, len(ENGLISH) + len(CHINESE))
    assert body["chunks"] == len(expected["chunks"]) == body["copied"]["indexed_chunks"]
    assert body["seconds"] >= 0
    copied = body["copied"]
    assert (copied["chat_sessions"], copied["chat_messages"], copied["ingest_jobs"]) == (1, 2, 1)
    assert copied["originals"] == len(expected["originals"]) and not copied["missing_originals"]
    assert copied["indexes_built"] == 0  # FAISS builds its HNSW in memory, no checkpoint step
    assert body["source"]["consistent"] and body["target"]["consistent"]
    assert {c["collection"] for c in body["target"]["collections"]} == {"english", "chinese"}

    target_settings = fast_settings(target_dir, database_url=target_url, index=INDEX)
    assert (target_dir / "files").is_dir()  # originals as files, as any embedded base keeps them
    assert_doctor_consistent(target_settings)
    target = build_services(target_settings)
    try:
        assert target.kb.store.name == "files"
    finally:
        target.close()
    assert_copied(source, target_settings, expected, hits)

    # The source is as it was: rows, originals, vectors, graph and hits.
    assert snapshot(source.services) == expected
    assert pg_vectors(source.url) == source_vectors
    assert hnsw_collections(source.url) == {"english"}
    assert_same_results(hits, results(source.services))
    assert_doctor_consistent(source.settings)


def test_migrate_postgres_into_another_postgres_server_database(
    source: Source, postgres_server: Any, tmp_path: Path
) -> None:
    """Moving servers: every row, vector and original, the HNSW graph built on the target."""
    expected, hits = snapshot(source.services), results(source.services)
    source_vectors = pg_vectors(source.url)
    target_url = new_database(postgres_server)
    target_settings = fast_settings(tmp_path / "target", database_url=target_url, index=INDEX)

    report, check = migrate(source, target_settings)

    assert check.consistent, (check.source, check.target, check.differences)
    assert report["collections"] == 2 and report["documents"] == len(ENGLISH) + len(CHINESE)
    assert report["chunks"] == len(expected["chunks"]) == report["indexed_chunks"]
    assert (report["chat_sessions"], report["chat_messages"], report["ingest_jobs"]) == (1, 2, 1)
    assert report["originals"] == len(expected["originals"])
    assert report["indexes_built"] == 1  # the English collection's graph, as on the source
    assert hnsw_collections(target_url) == {"english"}
    assert pg_vectors(target_url) == source_vectors  # pgvector rows bit for bit
    assert_doctor_consistent(target_settings)
    assert_copied(source, target_settings, expected, hits)

    assert snapshot(source.services) == expected
    assert pg_vectors(source.url) == source_vectors
    assert_same_results(hits, results(source.services))


def test_replicas_writing_during_the_copy_do_not_tear_it(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PostgreSQL source is read in one snapshot: what another replica commits meanwhile
    (a new document, a deletion with its original) is not half copied."""
    import rag.db.copy as copy_module

    expected, hits = snapshot(source.services), results(source.services)
    bread = next(d[0] for d in expected["documents"] if d[2] == "bread.txt")
    real_kill_point = copy_module.kill_point
    writes: list[str] = []

    def replica_writes(name: str) -> None:
        if name == "migrate.originals" and not writes:  # the snapshot is taken by now
            ingest = build_ingest_service(source.services)
            added = ingest.ingest_bytes(
                b"Matcha is ground green tea.", "m.txt", collection="english"
            )
            source.services.kb.delete_document(bread)
            writes.append(added.document_id)
        real_kill_point(name)

    monkeypatch.setattr(copy_module, "kill_point", replica_writes)
    target_settings = fast_settings(tmp_path / "embedded", index=INDEX)
    report, check = migrate(source, target_settings)

    assert writes and not report["missing_originals"]
    assert all(c.consistent for c in check.target)
    assert snapshot(source.services) != expected  # the source moved on; the target did not
    target = build_services(target_settings)
    try:
        assert snapshot(target) == expected  # bread.txt and its original, not m.txt
        assert_same_results(hits, results(target))
    finally:
        target.close()


def test_an_emptied_source_still_hands_on_its_id_counters(pg_url: str, tmp_path: Path) -> None:
    """Every chunk deleted: SQLite has no counter row to raise, so the copy writes one."""
    settings = fast_settings(tmp_path / "source", database_url=pg_url)
    services = build_services(settings)
    try:
        ingest = build_ingest_service(services)
        gone = ingest.ingest_bytes(b"Short-lived note about kites.", "kites.txt")
        gone_ids = [c.id for c in services.kb.document_chunks(gone.document_id)]
        services.kb.delete_document(gone.document_id)
    finally:
        services.close()
    target_settings = fast_settings(tmp_path / "embedded")
    src = open_knowledge_base(settings, "source")
    dst = open_knowledge_base(target_settings, "target")
    try:
        check_copy_allowed(src, dst)
        report = copy_knowledge_base(src, dst)
    finally:
        src.close()
        dst.close()
    assert (report.collections, report.documents, report.chunks) == (1, 0, 0)
    target = build_services(target_settings)
    try:
        added = build_ingest_service(target).ingest_bytes(b"Kites fly in wind.", "kites.txt")
        assert min(c.id for c in target.kb.document_chunks(added.document_id)) > max(gone_ids)
    finally:
        target.close()
