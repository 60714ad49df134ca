"""Alembic migrations on SQLite and PostgreSQL: new, older, pre-Alembic and newer databases."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from typer.testing import CliRunner

from rag.db.engine import create_database_engine, make_engine
from rag.db.migrate import alembic_config, head_revision, schema_status, upgrade_database
from rag.db.models import Base
from rag.errors import ConfigError

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'rag.db'}"
    return request.getfixturevalue("pg_url")


def target_metadata(dialect: str) -> list[sa.MetaData]:
    """Every MetaData whose tables the revisions create on this backend."""
    metadatas = [Base.metadata]
    try:
        from rag.blobs import BLOB_METADATA
    except ImportError:  # the blobs table is not there yet
        pass
    else:
        metadatas.append(BLOB_METADATA)
    if dialect == "postgresql":
        try:
            from rag.store import pg_schema
        except ImportError:  # the PostgreSQL search store is not there yet
            pass
        else:
            metadatas.append(pg_schema.metadata)
    return metadatas


def schema_differences(engine: sa.Engine) -> list[Any]:
    """What autogenerate would change to make the database match the models (none: equal)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, target_metadata(engine.dialect.name))


def version_rows(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(sa.text("SELECT version_num FROM alembic_version")))


def test_new_database_upgraded_to_head_matches_the_models(db_url: str) -> None:
    assert schema_status(create_database_engine(db_url)).revision is None
    engine = make_engine(db_url)
    try:
        status = schema_status(engine)
        assert status.revision == head_revision() and status.is_head and status.known
        assert schema_differences(engine) == []
        # Opening it again changes nothing.
        assert upgrade_database(engine).changed is False
        assert version_rows(engine) == [head_revision()]
    finally:
        engine.dispose()


def _insert_rows(conn: sa.Connection) -> None:
    """One collection, document, chunk and job, written with the columns every schema has."""
    conn.execute(
        sa.text("INSERT INTO collections (id, name, created_at) VALUES (1, 'default', :now)"),
        {"now": "2026-01-01 00:00:00"},
    )
    conn.execute(
        sa.text(
            "INSERT INTO documents (id, collection_id, filename, media_type, size_bytes, sha256,"
            " page_count, chunk_count, status, version, created_at, updated_at) VALUES"
            " ('d1', 1, 'a.pdf', 'application/pdf', 10, 'abc', 1, 1, 'ready', 1, :now, :now)"
        ),
        {"now": "2026-01-01 00:00:00"},
    )
    conn.execute(
        sa.text(
            "INSERT INTO chunks (document_id, collection_id, ordinal, text, page_start, page_end,"
            " char_start, char_end, token_count, page_breaks, embedding) VALUES"
            " ('d1', 1, 0, 'hello world', 1, 1, 0, 11, 2, '[]', :emb)"
        ),
        {"emb": b"\x00\x01"},
    )
    conn.execute(
        sa.text(
            "INSERT INTO ingest_jobs (id, collection, filename, status, pages_parsed,"
            " chunks_total, chunks_embedded, options, created_at, updated_at) VALUES"
            " ('j1', 'default', 'a.pdf', 'succeeded', 1, 1, 1, '{}', :now, :now)"
        ),
        {"now": "2026-01-01 00:00:00"},
    )


def _assert_rows_kept(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT name, embedding_model FROM collections")).all() == [
            ("default", "")
        ]
        assert conn.execute(sa.text("SELECT id, status FROM documents")).all() == [("d1", "ready")]
        assert conn.execute(sa.text("SELECT text, ocr_confidence FROM chunks")).all() == [
            ("hello world", None)
        ]
        assert conn.execute(sa.text("SELECT id FROM ingest_jobs")).all() == [("j1",)]


def test_database_at_an_older_revision_is_upgraded_and_keeps_its_rows(db_url: str) -> None:
    engine = create_database_engine(db_url)
    with engine.begin() as conn:
        config = alembic_config(conn)
        command.upgrade(config, "0001_initial")
        _insert_rows(conn)
    assert schema_status(engine).revision == "0001_initial"
    engine.dispose()

    engine = make_engine(db_url)
    try:
        assert schema_status(engine).is_head
        assert schema_differences(engine) == []
        _assert_rows_kept(engine)
        # The foreign keys still cascade after SQLite's batch copies of tables.
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM documents WHERE id = 'd1'"))
        with engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT count(*) FROM chunks")) == 0
    finally:
        engine.dispose()


def _make_pre_alembic_sqlite(url: str, *, duplicate_live_copies: bool = False) -> None:
    """A database as an older build left it: ``create_all`` of older models, no alembic_version.

    The older models lack ``collections.embedding_model``, ``chunks.ocr_confidence``
    and the partial unique index on documents.
    """
    engine = create_database_engine(url)
    with engine.begin() as conn:
        Base.metadata.create_all(conn)
        conn.execute(sa.text("DROP INDEX ux_documents_collection_sha_live"))
        conn.execute(sa.text("ALTER TABLE collections DROP COLUMN embedding_model"))
        conn.execute(sa.text("ALTER TABLE chunks DROP COLUMN ocr_confidence"))
        _insert_rows(conn)
        if duplicate_live_copies:
            conn.execute(
                sa.text(
                    "INSERT INTO documents (id, collection_id, filename, media_type, size_bytes,"
                    " sha256, page_count, chunk_count, status, version, created_at, updated_at)"
                    " VALUES ('d2', 1, 'a copy.pdf', 'application/pdf', 10, 'abc', 1, 0,"
                    " 'ready', 1, :now, :now)"
                ),
                {"now": "2026-01-01 00:00:00"},
            )
    assert not sa.inspect(engine).has_table("alembic_version")
    engine.dispose()


def test_pre_alembic_database_is_adopted_and_keeps_its_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rag.db'}"
    _make_pre_alembic_sqlite(url)
    status = schema_status(create_database_engine(url))
    assert status.pre_alembic and status.revision is None and not status.is_head

    engine = create_database_engine(url)
    result = upgrade_database(engine)
    try:
        assert result.adopted and result.from_revision is None
        assert result.to_revision == head_revision()
        assert schema_differences(engine) == []
        _assert_rows_kept(engine)
        assert version_rows(engine) == [head_revision()]
    finally:
        engine.dispose()


def test_pre_alembic_duplicates_skip_the_unique_index_but_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rag.db'}"
    _make_pre_alembic_sqlite(url, duplicate_live_copies=True)
    engine = make_engine(url)
    try:
        assert schema_status(engine).is_head
        indexes = {index["name"] for index in sa.inspect(engine).get_indexes("documents")}
        assert "ux_documents_collection_sha_live" not in indexes
        assert "ix_documents_collection_sha" in indexes
        with engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT count(*) FROM documents")) == 2
    finally:
        engine.dispose()


def test_database_newer_than_the_code_is_refused(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    engine.dispose()
    status = schema_status(create_database_engine(db_url))
    assert status.revision == "9999_from_the_future" and not status.known
    for auto_upgrade in (True, False):
        with pytest.raises(ConfigError, match="9999_from_the_future.*upgrade rag-kb"):
            make_engine(db_url, auto_upgrade=auto_upgrade)


def test_auto_upgrade_off_needs_an_upgraded_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rag.db'}"
    with pytest.raises(ConfigError, match="rag db upgrade"):
        make_engine(url, auto_upgrade=False)
    engine = create_database_engine(url)
    upgrade_database(engine)
    engine.dispose()
    make_engine(url, auto_upgrade=False).dispose()


def test_up_to_date_sqlite_opens_while_another_process_writes(tmp_path: Path) -> None:
    import sqlite3

    url = f"sqlite:///{tmp_path / 'rag.db'}"
    make_engine(url).dispose()
    writer = sqlite3.connect(tmp_path / "rag.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # holds the write lock, as a long ingest does
    try:
        # Were the migration lock taken at every open, this would wait out the busy
        # timeout and fail with "database is locked".
        engine = make_engine(url)
        assert schema_status(engine).is_head
        engine.dispose()
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def _open_after_barrier(url: str, barrier: Any, results: Any) -> None:
    """Child process: wait for every sibling, then open the database like a server does."""
    try:
        barrier.wait()
        engine = make_engine(url)
        results.put(("ok", schema_status(engine).revision))
        engine.dispose()
    except BaseException as exc:  # reported to the parent, which fails the test
        results.put(("error", repr(exc)))


def test_processes_opening_a_new_database_at_once(db_url: str) -> None:
    processes = 3
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    children = [
        ctx.Process(target=_open_after_barrier, args=(db_url, barrier, results))
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=300) for _ in children]
    for child in children:
        child.join(timeout=60)
    assert outcomes == [("ok", head_revision())] * processes
    assert [child.exitcode for child in children] == [0] * processes
    engine = create_database_engine(db_url)
    try:
        assert version_rows(engine) == [head_revision()]
        assert schema_differences(engine) == []
    finally:
        engine.dispose()


def _cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    from cli.main import app

    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_cli_db_upgrade_and_current_json(tmp_path: Path) -> None:
    env = {"RAG_DATA_DIR": str(tmp_path / "data")}
    url = f"sqlite:///{(tmp_path / 'data' / 'rag.db').resolve()}"
    head = head_revision()

    code, out, _ = _cli(env, "db", "current", "--json")
    assert code == 0
    assert json.loads(out) == {
        "revision": None,
        "head": head,
        "is_head": False,
        "known": True,
        "pre_alembic": False,
        "url": url,
    }
    code, out, _ = _cli(env, "db", "upgrade", "--json")
    assert code == 0 and json.loads(out) == {"from": None, "to": head, "url": url}
    code, out, _ = _cli(env, "db", "upgrade", "--json")
    assert code == 0 and json.loads(out) == {"from": head, "to": head, "url": url}
    code, out, _ = _cli(env, "db", "current", "--json")
    assert code == 0 and json.loads(out)["revision"] == head and json.loads(out)["is_head"]
    code, out, _ = _cli(env, "db", "current")
    assert code == 0 and head in out and "(head)" in out

    engine = create_database_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    engine.dispose()
    code, out, _ = _cli(env, "db", "current", "--json")
    assert code == 0 and json.loads(out)["known"] is False
    code, _, err = _cli(env, "db", "upgrade", "--json")
    assert code == 1 and "upgrade rag-kb" in err


def test_cli_db_upgrade_postgres_hides_the_password(pg_url: str, tmp_path: Path) -> None:
    # The test server trusts local socket connections, so any password is accepted.
    url = pg_url.replace("postgresql+psycopg://postgres@", "postgresql+psycopg://postgres:s3cret@")
    code, out, _ = _cli(
        {"RAG_DATABASE_URL": url, "RAG_DATA_DIR": str(tmp_path)}, "db", "upgrade", "--json"
    )
    assert code == 0, out
    data = json.loads(out)
    assert data["from"] is None and data["to"] == head_revision()
    assert "s3cret" not in data["url"] and data["url"].startswith("postgresql+psycopg://postgres:")
