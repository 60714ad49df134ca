"""One contract for both search stores: the embedded files and PostgreSQL (pgvector + BM25 in SQL).

Every test runs against each backend through the knowledge base, as users
reach it, and the last one checks the two backends rank the same chunks the
same way on the same corpus.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ingest.service import build_ingest_service
from rag.errors import EmbeddingMismatch
from rag.query.retrieval import RetrievalFilter
from rag.services import Services, build_embedder_for, build_services
from rag.settings import Settings
from tests.conftest import fast_settings

pytestmark = pytest.mark.integration

SOLAR = (
    "Solar panels convert sunlight into electricity. An inverter turns direct current into "
    "alternating current. Batteries store surplus energy for the night."
)
TEA = "绿茶不发酵，保留了鲜叶中较多的天然物质。乌龙茶属于半发酵茶。2013年红茶是全发酵茶。"
RIVER = (
    "The Danube flows through ten countries, more than any other river in the world. "
    "It rises in the Black Forest and empties into the Black Sea."
)


def _settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    if backend == "postgres":
        return fast_settings(tmp_path / "kb", database_url=request.getfixturevalue("pg_url"))
    return fast_settings(tmp_path / "kb")


@pytest.fixture(params=["files", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return _settings(request.param, tmp_path, request)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    services = build_services(settings)
    yield services
    services.close()


def ingest(services: Services, text: str, name: str, collection: str | None = None) -> str:
    service = build_ingest_service(services)
    outcome = service.ingest_bytes(text.encode(), name, collection=collection)
    assert outcome.status == "ready", outcome
    return outcome.document_id


def _consistent(services: Services) -> None:
    for check in services.kb.check():
        assert check.consistent, check
        assert check.sql_chunks == check.faiss_chunks == check.bm25_chunks


def test_store_names_its_backend(services: Services, settings: Settings) -> None:
    expected = "postgres" if settings.resolved_database_url.startswith("postgresql") else "files"
    assert services.kb.store.name == expected


def test_added_chunks_are_found_by_every_mode_in_both_scripts(services: Services) -> None:
    ingest(services, SOLAR, "solar.txt")
    ingest(services, TEA, "tea.txt")
    ingest(services, RIVER, "river.txt")
    _consistent(services)
    retriever = services.retriever()
    for mode in ("dense", "sparse", "hybrid"):
        hits = retriever.retrieve("inverter alternating current", mode=mode, top_k=3).hits
        assert hits and hits[0].filename == "solar.txt", (mode, hits)
    hits = retriever.retrieve("乌龙茶是什么茶", mode="sparse", top_k=3).hits
    assert hits and hits[0].filename == "tea.txt"
    hits = retriever.retrieve("2013年", mode="sparse", top_k=3).hits
    assert hits and hits[0].filename == "tea.txt"


def test_deleted_document_is_gone_from_every_mode(services: Services) -> None:
    keep = ingest(services, RIVER, "river.txt")
    gone = ingest(services, SOLAR, "solar.txt")
    services.kb.delete_document(gone)
    _consistent(services)
    retriever = services.retriever()
    for mode in ("dense", "sparse", "hybrid"):
        hits = retriever.retrieve("inverter alternating current solar", mode=mode, top_k=10).hits
        assert all(h.document_id != gone for h in hits), mode
    assert services.kb.get_document(keep).status == "ready"


def test_filters_by_document_and_page(services: Services) -> None:
    solar = ingest(services, SOLAR, "solar.txt")
    ingest(services, RIVER + " Solar farms line the river.", "river.txt")
    retriever = services.retriever()
    for mode in ("dense", "sparse", "hybrid"):
        only = RetrievalFilter(document_ids=(solar,))
        hits = retriever.retrieve("solar", mode=mode, top_k=10, where=only).hits
        assert hits and {h.document_id for h in hits} == {solar}, mode
        later = RetrievalFilter(pages=(5, 9))
        assert not retriever.retrieve("solar", mode=mode, top_k=10, where=later).hits, mode


def test_reembed_changes_the_vector_size_and_keeps_keywords(services: Services) -> None:
    ingest(services, SOLAR, "solar.txt")
    ingest(services, RIVER, "river.txt")
    new = build_embedder_for(services.settings, "hashing-128")
    info = services.kb.reembed_collection("default", new)
    assert info.embedding_dim == 128 and info.embedding_model == new.name
    _consistent(services)
    (cid,) = services.kb.collection_ids(["default"])
    hits = services.kb.search_dense(cid, new.embed_query("inverter alternating current"), 2, None)
    assert hits and len(hits) == 2
    with pytest.raises(EmbeddingMismatch):
        services.kb.search_dense(cid, np.ones(256, dtype=np.float32) / 16.0, 2, None)
    assert services.kb.search_sparse(cid, "Danube Black Sea", 1, None)


def test_deleted_collection_leaves_nothing_and_its_name_starts_fresh(services: Services) -> None:
    services.kb.create_collection("tmp")
    ingest(services, SOLAR, "solar.txt", collection="tmp")
    (old_id,) = services.kb.collection_ids(["tmp"])
    assert services.kb.delete_collection("tmp") == 1
    services.kb.create_collection("tmp")
    (new_id,) = services.kb.collection_ids(["tmp"])
    assert services.kb.collection_size(new_id) == 0
    assert not services.kb.search_sparse(new_id, "inverter", 5, None)
    assert not services.kb.search_dense(new_id, services.embedder.embed_query("inverter"), 5, None)
    _consistent(services)
    del old_id


def test_repair_restores_what_the_indexes_lost(services: Services) -> None:
    doc = ingest(services, SOLAR, "solar.txt")
    ingest(services, RIVER, "river.txt")
    (cid,) = services.kb.collection_ids(["default"])
    lost = [c.id for c in services.kb.document_chunks(doc)]
    with services.kb.store.writing(cid):
        services.kb.store.restore(cid, [], lost)  # the indexes drop one document's chunks
    (check,) = services.kb.check()
    assert not check.consistent and set(check.missing_in_bm25) == set(lost)
    (after,) = services.kb.repair()
    assert after.consistent
    hits = services.retriever().retrieve("inverter", mode="sparse", top_k=1).hits
    assert hits[0].document_id == doc


def test_a_reopened_knowledge_base_answers_the_same(settings: Settings) -> None:
    first = build_services(settings)
    ingest(first, SOLAR, "solar.txt")
    ingest(first, TEA, "tea.txt")
    before = [
        (h.chunk_id, round(h.score, 6))
        for h in first.retriever().retrieve("绿茶 inverter", mode="hybrid", top_k=5).hits
    ]
    first.close()
    second = build_services(settings)
    try:
        _consistent(second)
        after = [
            (h.chunk_id, round(h.score, 6))
            for h in second.retriever().retrieve("绿茶 inverter", mode="hybrid", top_k=5).hits
        ]
        assert after == before
    finally:
        second.close()


def test_both_backends_rank_the_same_chunks_with_the_same_scores(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    texts = [SOLAR, TEA, RIVER, SOLAR + " Wind turbines too.", TEA + " 白茶轻微发酵。"]
    queries = ["inverter current", "发酵茶", "Black Sea river", "wind solar", "白茶 2013年"]
    ranked: dict[str, list[list[tuple[str, int, float]]]] = {}
    for backend in ("files", "postgres"):
        services = build_services(_settings(backend, tmp_path / backend, request))
        try:
            for n, text in enumerate(texts):
                ingest(services, text, f"doc{n}.txt")
            ranked[backend] = [
                [
                    (h.filename, h.ordinal, round(h.score, 5))
                    for h in services.retriever().retrieve(q, mode=mode, top_k=5).hits
                ]
                for q in queries
                for mode in ("dense", "sparse", "hybrid")
            ]
        finally:
            services.close()
    assert ranked["files"] == ranked["postgres"]
