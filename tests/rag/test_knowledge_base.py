"""The one write path: SQL, FAISS and BM25 agree after adds, deletes, replays and repairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.service import IngestService
from rag.errors import CollectionNotFound, Conflict, DocumentNotFound, InvalidInput
from rag.services import build_services
from tests.conftest import fast_settings

pytestmark = pytest.mark.integration

SOLAR = (
    "Solar panels convert sunlight into electricity. An inverter turns direct current into "
    "alternating current. Batteries store surplus energy for the night."
)
TEA = "绿茶不发酵，保留了鲜叶中较多的天然物质。乌龙茶属于半发酵茶。红茶是全发酵茶。"


@pytest.fixture
def services(tmp_path: Path):
    services = build_services(fast_settings(tmp_path / "kb"))
    yield services
    services.close()


def ingest(services, text: str, name: str, collection: str | None = None):
    service = IngestService(services.kb, services.embedder, services.settings.ingest)
    return service.ingest_bytes(text.encode(), name, collection=collection)


def test_add_makes_all_three_stores_agree(services) -> None:
    outcome = ingest(services, SOLAR, "solar.txt")
    assert outcome.action == "created" and outcome.status == "ready" and outcome.chunks >= 1
    checks = services.kb.check()
    assert [c.consistent for c in checks] == [True]
    assert checks[0].sql_chunks == checks[0].faiss_chunks == checks[0].bm25_chunks


def test_delete_removes_chunks_from_every_store_and_from_disk(services, tmp_path: Path) -> None:
    keep = ingest(services, TEA, "tea.txt")
    gone = ingest(services, SOLAR, "solar.txt")
    chunk_ids = [c.id for c in services.kb.document_chunks(gone.document_id)]
    vectors = [np.frombuffer(row, dtype=np.float32) for row in _embeddings(services, chunk_ids)]
    services.kb.delete_document(gone.document_id)

    retriever = services.retriever()
    for mode in ("dense", "sparse", "hybrid"):
        result = retriever.retrieve("inverter alternating current solar", mode=mode, top_k=10)
        assert all(h.document_id != gone.document_id for h in result.hits)
    cid = services.kb.get_collection("default").id
    dense_ids = {h.chunk_id for h in services.kb.search_dense(cid, vectors[0], 10, None)}
    assert not set(chunk_ids) & dense_ids
    index_dir = services.kb.index_dir / f"c{cid}"
    blob = b"".join(p.read_bytes() for p in index_dir.iterdir())
    for vector in vectors:
        assert vector.tobytes() not in blob
    assert services.kb.check()[0].consistent
    assert services.kb.get_document(keep.document_id).status == "ready"
    with pytest.raises(DocumentNotFound):
        services.kb.get_document(gone.document_id)


def _embeddings(services, chunk_ids):
    from sqlalchemy import select

    from rag.db.models import ChunkRow

    with services.kb.sessions() as session:
        return list(session.scalars(select(ChunkRow.embedding).where(ChunkRow.id.in_(chunk_ids))))


def test_same_bytes_return_the_existing_document(services) -> None:
    first = ingest(services, SOLAR, "solar.txt")
    again = ingest(services, SOLAR, "copy-of-solar.txt")
    assert again.action == "existing" and again.document_id == first.document_id
    assert services.kb.list_documents()[1] == 1


def test_changed_file_with_same_name_is_a_new_version_or_replaces(services) -> None:
    v1 = ingest(services, SOLAR, "notes.txt")
    v2 = ingest(services, SOLAR + " Panels last 25 years.", "notes.txt")
    assert v2.action == "created"
    assert services.kb.get_document(v2.document_id).version == 2
    service = IngestService(services.kb, services.embedder, services.settings.ingest)
    v3 = service.ingest_bytes((SOLAR + " Now v3.").encode(), "notes.txt", replace=True)
    assert v3.action == "replaced"
    docs, total = services.kb.list_documents()
    assert total == 1 and docs[0].id == v3.document_id
    for old in (v1, v2):
        with pytest.raises(DocumentNotFound):
            services.kb.get_document(old.document_id)
    assert services.kb.check()[0].consistent


def test_journal_replay_restores_indexes_after_a_crash_before_saving(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path / "kb")
    services = build_services(settings)
    services.kb.autoflush = False  # simulate dying after the SQL commit, before index files
    ingest(services, SOLAR, "solar.txt")
    ingest(services, TEA, "tea.txt")
    services.kb.engine.dispose()  # no flush: the process "dies" here
    reopened = build_services(settings)
    try:
        checks = reopened.kb.check()
        assert checks[0].consistent and checks[0].sql_chunks >= 2
        hits = reopened.retriever().retrieve("乌龙茶 半发酵", top_k=3).hits
        assert hits and hits[0].filename == "tea.txt"
    finally:
        reopened.close()


def test_repair_fixes_a_tampered_index(services) -> None:
    ingest(services, SOLAR, "solar.txt")
    ingest(services, TEA, "tea.txt")
    kb = services.kb
    cid = kb.get_collection("default").id
    indexes = kb.store.loaded(cid)
    victim = int(indexes.sparse.ids()[0])
    indexes.sparse.remove([victim])
    indexes.vectors.add(np.array([999_999]), np.ones((1, 256), dtype=np.float32) / 16)
    check = kb.check()[0]
    assert not check.consistent
    assert check.missing_in_bm25 == (victim,) and check.extra_in_faiss == (999_999,)
    assert kb.repair()[0].consistent


def test_interrupted_documents_are_failed_on_start(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path / "kb")
    services = build_services(settings)
    services.kb.create_collection("default", exist_ok=True)
    doc = services.kb.begin_document(
        "default", "half.txt", media_type="text/plain", size_bytes=3, sha256="x"
    )
    services.close()
    reopened = build_services(settings)
    try:
        info = reopened.kb.get_document(doc.id)
        assert info.status == "failed" and "interrupted" in (info.error or "")
        assert reopened.kb.check()[0].consistent
    finally:
        reopened.close()


def test_collections_lifecycle_and_errors(services) -> None:
    kb = services.kb
    kb.create_collection("papers")
    with pytest.raises(Conflict):
        kb.create_collection("papers")
    with pytest.raises(InvalidInput, match="collection name"):
        kb.create_collection("../etc")
    ingest(services, SOLAR, "solar.txt", collection="papers")
    assert kb.delete_collection("papers") == 1
    with pytest.raises(CollectionNotFound):
        kb.get_collection("papers")


def test_document_filter_searches_only_that_document(services) -> None:
    a = ingest(services, SOLAR, "solar.txt")
    ingest(services, SOLAR.replace("Solar", "Wind").replace("sunlight", "wind"), "wind.txt")
    from rag.query.retrieval import RetrievalFilter

    result = services.retriever().retrieve(
        "panels electricity", where=RetrievalFilter(document_ids=(a.document_id,)), top_k=5
    )
    assert result.hits and {h.document_id for h in result.hits} == {a.document_id}


def test_one_live_document_per_collection_and_bytes(services) -> None:
    """Issue 14, defect 3: the database itself refuses a second live copy of the same bytes."""
    from sqlalchemy.exc import IntegrityError

    from rag.db.models import Document
    from rag.errors import DuplicateDocument

    kb = services.kb
    kb.create_collection("c")
    first = kb.begin_document("c", "a.txt", media_type="text/plain", size_bytes=3, sha256="abc")
    with pytest.raises(DuplicateDocument) as info:
        kb.begin_document("c", "b.txt", media_type="text/plain", size_bytes=3, sha256="abc")
    assert info.value.existing.id == first.id  # type: ignore[attr-defined]
    # A racing writer that skipped the check is stopped by the unique index.
    collection_id = kb.get_collection("c").id
    with pytest.raises(IntegrityError), kb.sessions.begin() as session:
        session.add(
            Document(collection_id=collection_id, filename="c.txt", sha256="abc", status="pending")
        )
    # Failed rows do not count: the same bytes may be tried again; other collections are free.
    kb.fail_document(first.id, "broken")
    again = kb.begin_document("c", "a.txt", media_type="text/plain", size_bytes=3, sha256="abc")
    assert again.id != first.id and again.version == 2
    kb.create_collection("d")
    kb.begin_document("d", "a.txt", media_type="text/plain", size_bytes=3, sha256="abc")


def test_a_document_whose_collection_vanished_is_not_found(services) -> None:
    """Issue 14, defect 5: no AttributeError when the collection row is gone."""
    from sqlalchemy import text

    kb = services.kb
    doc = ingest(services, SOLAR, "solar.txt", collection="gone")
    with kb.engine.connect() as conn:  # what a concurrent delete leaves for a moment
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        conn.execute(text("DELETE FROM collections WHERE name = 'gone'"))
        conn.commit()
        conn.exec_driver_sql("PRAGMA foreign_keys=ON")
    with pytest.raises(DocumentNotFound):
        kb.get_document(doc.document_id)


def _index_files(services) -> list[str]:
    cid = services.kb.get_collection("default").id
    return sorted(p.name for p in (services.kb.index_dir / f"c{cid}").iterdir())


def test_index_files_are_saved_at_checkpoints_not_per_document(tmp_path: Path) -> None:
    settings = fast_settings(
        tmp_path / "kb", index={"checkpoint_entries": 3, "checkpoint_seconds": 1e9}
    )
    services = build_services(settings)
    ingest(services, SOLAR, "solar.txt")
    ingest(services, TEA, "tea.txt")
    assert _index_files(services) == []  # two writes: the journal holds them
    ingest(services, SOLAR + " Wind turbines too.", "wind.txt")
    files = _index_files(services)
    assert len(files) == 2 and all(".3." in name for name in files), files
    assert services.kb.store._max_seq() == 0  # the journal is pruned once the files hold it
    ingest(services, TEA + " 白茶轻微发酵。", "white.txt")
    services.kb.engine.dispose()  # the process dies before the next checkpoint
    reopened = build_services(settings)
    try:
        checks = reopened.kb.check()
        assert checks[0].consistent and checks[0].sql_chunks == 4
        hits = reopened.retriever().retrieve("白茶 轻微发酵", top_k=1).hits
        assert hits[0].filename == "white.txt"
    finally:
        reopened.close()


def test_idle_checkpoint_saves_what_is_due(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path / "kb", index={"checkpoint_seconds": 0.0})
    services = build_services(settings)
    try:
        services.kb.autoflush = False  # a bulk load: nothing is saved until asked
        ingest(services, SOLAR, "solar.txt")
        assert services.kb.checkpoint() == 0 and _index_files(services) == []
        services.kb.autoflush = True
        assert services.kb.checkpoint() == 1 and len(_index_files(services)) == 2
        assert services.kb.checkpoint() == 0
    finally:
        services.close()
