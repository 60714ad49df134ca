"""Hybrid retrieval leaves the dense retriever out for a language the embedder does not cover."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.service import build_ingest_service
from rag.embedding import SentenceTransformerEmbedder, embedder_languages
from rag.services import Services, build_services
from rag.settings import EmbeddingSettings
from tests.conftest import fast_settings

pytestmark = pytest.mark.integration

DOCS = {
    "longjing.md": "西湖龙井是产于杭州西湖一带的绿茶，以色绿、香郁、味甘、形美著称。",
    "puer.md": "普洱茶属于黑茶，经过后发酵，存放时间越长，口感往往越醇厚。",
    "bcpl.md": "BCPL语言由剑桥大学的马丁·理查德在1966年提出，是C语言的前身。",
    "tea.md": "Green tea is steamed or pan-fired soon after picking to stop oxidation.",
    "coffee.md": "Espresso is brewed by forcing hot water through finely ground coffee.",
}


def _services(tmp_path: Path, languages: list[str] | None) -> Services:
    services = build_services(fast_settings(tmp_path / "kb", embedding={"languages": languages}))
    ingest = build_ingest_service(services)
    for name, text in DOCS.items():
        assert ingest.ingest_bytes(text.encode(), name).ok
    return services


@pytest.fixture
def english_only(tmp_path: Path):
    services = _services(tmp_path, ["en"])
    yield services
    services.close()


@pytest.mark.parametrize("fusion", ["weighted", "rrf"])
def test_uncovered_question_is_answered_by_bm25_alone(english_only: Services, fusion: str) -> None:
    retriever = english_only.retriever()
    question = "BCPL由谁提出来的？"
    assert not retriever.dense_covers(question)
    hybrid = retriever.retrieve(question, top_k=5, fusion=fusion)
    sparse = retriever.retrieve(question, top_k=5, mode="sparse", fusion=fusion)
    assert [h.chunk_id for h in hybrid.hits] == [h.chunk_id for h in sparse.hits]
    assert hybrid.hits[0].filename == "bcpl.md"
    assert hybrid.best_dense == 0.0 and hybrid.best_sparse == sparse.best_sparse
    for rank, hit in enumerate(hybrid.hits, start=1):
        assert hit.dense_rank is None and hit.dense_score is None  # dense was not consulted
        assert hit.sparse_rank == rank and hit.sparse_score is not None
    if fusion == "weighted":  # BM25's min-max-normalised score in full
        assert hybrid.hits[0].score == pytest.approx(1.0)
    else:
        rrf_k = english_only.settings.retrieval.rrf_k
        assert hybrid.hits[0].score == pytest.approx(1 / (rrf_k + 1))


def test_covered_question_still_fuses_both(english_only: Services) -> None:
    retriever = english_only.retriever()
    hits = retriever.retrieve("How is green tea processed after picking?", top_k=3).hits
    assert hits[0].filename == "tea.md"
    assert hits[0].dense_rank is not None and hits[0].sparse_rank is not None
    # an explicit dense search is honoured whatever the language
    dense = retriever.retrieve("普洱茶属于哪一类茶？", top_k=3, mode="dense").hits
    assert dense and all(h.dense_rank is not None for h in dense)


def test_embedder_covering_the_language_fuses_both(tmp_path: Path) -> None:
    services = _services(tmp_path, None)  # the hashing embedder covers any language
    try:
        hits = services.retriever().retrieve("普洱茶属于哪一类茶？", top_k=3).hits
        assert hits[0].filename == "puer.md"
        assert hits[0].dense_rank is not None and hits[0].sparse_rank is not None
    finally:
        services.close()


def test_declared_languages() -> None:
    assert embedder_languages(EmbeddingSettings()) == {"en"}  # bundled all-MiniLM-L6-v2
    assert embedder_languages(EmbeddingSettings(model="/models/bge-m3")) == {"*"}
    assert embedder_languages(EmbeddingSettings(languages=["EN", "zh"])) == {"en", "zh"}
    embedder = SentenceTransformerEmbedder(EmbeddingSettings())  # the model loads lazily
    assert embedder.languages == {"en"}
