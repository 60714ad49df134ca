"""One contract for every BlobStore: files on one host, the ``blobs`` table on SQLite and PG."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from rag.blobs import (
    BlobNotFound,
    BlobStore,
    LocalBlobStore,
    PrefixedBlobStore,
    SqlBlobStore,
    make_blob_stores,
)
from rag.errors import InvalidInput

pytestmark = pytest.mark.unit


class BlobStoreContract:
    """What every implementation must do; subclasses provide the ``store`` fixture."""

    def test_is_a_blob_store(self, store: BlobStore) -> None:
        assert isinstance(store, BlobStore)

    def test_put_then_get_returns_the_bytes(self, store: BlobStore) -> None:
        data = bytes(range(256)) * 1000  # every byte value, including NUL
        store.put("job1", data)
        assert store.get("job1") == data
        assert store.exists("job1")

    def test_put_replaces(self, store: BlobStore) -> None:
        store.put("job1", b"old")
        store.put("job1", b"new, and longer")
        assert store.get("job1") == b"new, and longer"

    def test_empty_bytes_are_a_value(self, store: BlobStore) -> None:
        store.put("empty", b"")
        assert store.exists("empty") and store.get("empty") == b""

    def test_missing_key(self, store: BlobStore) -> None:
        assert not store.exists("nothing")
        with pytest.raises(BlobNotFound, match="nothing"):
            store.get("nothing")
        store.delete("nothing")  # no error

    def test_delete_removes(self, store: BlobStore) -> None:
        store.put("job1", b"x")
        store.delete("job1")
        assert not store.exists("job1")
        with pytest.raises(BlobNotFound):
            store.get("job1")

    def test_keys_by_prefix_sorted(self, store: BlobStore) -> None:
        for key in ("b_2", "a/1", "a/2", "a_x", "b"):
            store.put(key, key.encode())
        assert store.keys() == ["a/1", "a/2", "a_x", "b", "b_2"]
        assert store.keys("a/") == ["a/1", "a/2"]
        assert store.keys("a_") == ["a_x"], "'_' is not a wildcard"
        assert store.keys("zz") == []

    @pytest.mark.parametrize("key", ["", "../etc", "a/../b", ".hidden", "a//b", "/abs", "a b"])
    def test_invalid_keys_are_refused(self, store: BlobStore, key: str) -> None:
        with pytest.raises(InvalidInput, match="blob keys"):
            store.put(key, b"x")

    def test_locate_names_the_key(self, store: BlobStore) -> None:
        assert "job1" in store.locate("job1")

    def test_concurrent_puts_of_one_key_leave_one_whole_value(self, store: BlobStore) -> None:
        values = [bytes([i]) * 50_000 for i in range(8)]
        threads = [threading.Thread(target=store.put, args=("same", v)) for v in values]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.get("same") in values


class TestLocalBlobStore(BlobStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> BlobStore:
        return LocalBlobStore(tmp_path / "blobs")

    def test_keys_are_files_below_the_folder(self, tmp_path: Path) -> None:
        store = LocalBlobStore(tmp_path)
        store.put("uploads/job1", b"x")
        assert (tmp_path / "uploads" / "job1").read_bytes() == b"x"
        assert store.locate("uploads/job1") == str(tmp_path / "uploads" / "job1")


class TestSqlBlobStoreSqlite(BlobStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[BlobStore]:
        engine = create_engine(f"sqlite:///{tmp_path / 'blobs.db'}")
        yield SqlBlobStore(sessionmaker(engine))
        engine.dispose()


@pytest.mark.integration
class TestSqlBlobStorePostgres(BlobStoreContract):
    @pytest.fixture
    def store(self, pg_url: str) -> Iterator[BlobStore]:
        engine = create_engine(pg_url)
        yield SqlBlobStore(sessionmaker(engine))
        engine.dispose()


class TestPrefixedBlobStore(BlobStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[BlobStore]:
        engine = create_engine(f"sqlite:///{tmp_path / 'blobs.db'}")
        inner = SqlBlobStore(sessionmaker(engine))
        inner.put("files/other", b"not an upload")
        yield PrefixedBlobStore(inner, "uploads/")
        engine.dispose()

    def test_keys_live_under_the_prefix(self, tmp_path: Path) -> None:
        inner = LocalBlobStore(tmp_path)
        store = PrefixedBlobStore(inner, "uploads/")
        store.put("job1", b"x")
        assert inner.get("uploads/job1") == b"x"
        assert store.keys() == ["job1"]

    def test_prefix_must_end_with_a_slash(self, tmp_path: Path) -> None:
        with pytest.raises(InvalidInput, match="ends with '/'"):
            PrefixedBlobStore(LocalBlobStore(tmp_path), "uploads")


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_knowledge_base_stores_follow_the_database(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'rag.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    engine = create_engine(url)
    originals, uploads = make_blob_stores(engine, sessionmaker(engine), tmp_path)
    uploads.put("job1", b"u")
    originals.put("job1", b"o")  # the same id in another kind of bytes
    assert (uploads.get("job1"), originals.get("job1")) == (b"u", b"o")
    if backend == "sqlite":
        assert (tmp_path / "uploads" / "job1").read_bytes() == b"u"
        assert (tmp_path / "files" / "job1").read_bytes() == b"o"
    else:
        assert uploads.locate("job1") == "sql:blobs/uploads/job1"
    engine.dispose()
