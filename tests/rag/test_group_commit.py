"""A bulk load commits each embedding group of documents in one SQL transaction.

Each document stays wholly searchable or absent; a document that cannot be
committed (deleted meanwhile) fails alone, and a file that replaces another
of the same name in the same group sees it ``ready`` first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from ingest.service import IngestService, build_ingest_service
from rag.db.models import IndexJournal
from rag.errors import DocumentNotFound
from rag.knowledge_base import KnowledgeBase, file_sha256
from rag.records import ReadyDocument
from rag.services import build_services
from rag.types import Chunk
from tests.conftest import fast_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def services(tmp_path: Path):
    services = build_services(fast_settings(tmp_path / "kb"))
    yield services
    services.close()


def _journal_entries(kb: KnowledgeBase) -> int:
    with kb.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(IndexJournal)) or 0)


def _ready(kb: KnowledgeBase, name: str, text: str) -> ReadyDocument:
    data = text.encode()
    doc = kb.begin_document(
        "default", name, media_type="text/plain", size_bytes=len(data), sha256=file_sha256(data)
    )
    chunk = Chunk(0, text, 0, len(text), 1, 1, len(text.split()))
    vector = np.ones((1, 256), dtype=np.float32) / 16.0
    return ReadyDocument(doc.id, [chunk], vector, page_count=1)


def test_a_group_of_documents_is_one_transaction_and_one_journal_entry(services) -> None:
    kb = services.kb
    kb.create_collection("default", exist_ok=True)
    items = [_ready(kb, f"n{i}.txt", f"note number {word}") for i, word in enumerate("abc")]
    before = _journal_entries(kb)
    docs = kb.commit_documents("default", items)
    assert [d.id for d in docs] == [item.doc_id for item in items]
    assert {d.status for d in docs} == {"ready"} and [d.chunks for d in docs] == [1, 1, 1]
    assert _journal_entries(kb) - before == 1
    check = kb.check()[0]
    assert check.consistent and check.sql_chunks == check.faiss_chunks == check.bm25_chunks == 3


def test_a_deleted_document_fails_the_whole_transaction(services) -> None:
    kb = services.kb
    kb.create_collection("default", exist_ok=True)
    keep, gone = _ready(kb, "keep.txt", "kept words"), _ready(kb, "gone.txt", "gone words")
    kb.delete_document(gone.doc_id)
    with pytest.raises(DocumentNotFound):
        kb.commit_documents("default", [keep, gone])
    assert kb.get_document(keep.doc_id).status == "processing"
    check = kb.check()[0]  # nothing of the group went in (the kept file waits, "processing")
    assert check.sql_chunks == check.faiss_chunks == check.bm25_chunks == 0
    assert kb.commit_documents("default", [keep])[0].status == "ready"
    assert kb.check()[0].consistent


def test_the_ingest_path_commits_a_group_at_once(services) -> None:
    service = build_ingest_service(services)
    calls: list[int] = []
    commit = services.kb.commit_documents

    def counted(collection, documents, **kwargs):
        calls.append(len(documents))
        return commit(collection, documents, **kwargs)

    services.kb.commit_documents = counted  # type: ignore[method-assign]
    files = [(f"doc{i}.txt", f"Document {i} is about topic {i}.".encode()) for i in range(6)]
    outcomes = service.ingest_many(files, group_chunks=4)
    assert [o.status for o in outcomes] == ["ready"] * 6
    assert calls == [4, 2]


def test_one_document_deleted_meanwhile_fails_alone(services) -> None:
    service = build_ingest_service(services)
    kb = services.kb
    commit = kb.commit_documents
    deleted: list[str] = []

    def delete_first_then_commit(collection, documents, **kwargs):
        if not deleted:  # another client deletes the group's first file meanwhile
            deleted.append(documents[0].doc_id)
            kb.delete_document(documents[0].doc_id)
        return commit(collection, documents, **kwargs)

    kb.commit_documents = delete_first_then_commit  # type: ignore[method-assign]
    files = [(f"doc{i}.txt", f"Document {i} is about topic {i}.".encode()) for i in range(3)]
    outcomes = service.ingest_many(files)
    assert [o.action for o in outcomes] == ["failed", "created", "created"]
    assert outcomes[0].document_id == deleted[0]
    assert kb.check()[0].consistent and kb.check()[0].sql_chunks == 2


def test_a_file_replacing_one_of_the_same_group_sees_it_ready(services) -> None:
    service = IngestService(services.kb, services.embedder, services.settings.ingest)
    files = [("notes.txt", b"first version of the notes"), ("notes.txt", b"second version")]
    outcomes = service.ingest_many(files, replace=True)
    assert [o.action for o in outcomes] == ["created", "replaced"]
    docs, total = services.kb.list_documents()
    assert total == 1 and docs[0].id == outcomes[1].document_id
    assert services.kb.check()[0].consistent and services.kb.check()[0].sql_chunks == 1


@pytest.mark.slow
def test_the_bundled_tokenizer_and_length_come_without_loading_the_model(real_embedder) -> None:
    from rag.embedding import SentenceTransformerEmbedder
    from rag.settings import load_settings

    embedder = SentenceTransformerEmbedder(load_settings().embedding)
    texts = ["Solar panels convert sunlight.", "绿茶不发酵，保留了鲜叶中较多的天然物质。2013年"]
    counts = embedder.token_counter.count_tokens(texts)
    assert embedder._model is None  # chunking can start while the model loads
    # The loaded model's own tokenizer and length agree.
    assert counts == [len(real_embedder.model.tokenizer.tokenize(t)) for t in texts]
    assert embedder.max_tokens == int(real_embedder.model.max_seq_length) - 2 == 254
    assert embedder._model is None
