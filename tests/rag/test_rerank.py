from __future__ import annotations

from pathlib import Path

import pytest

from rag.errors import ConfigError, InvalidInput
from rag.rerank import CrossEncoderReranker
from rag.types import Hit

pytestmark = pytest.mark.unit

WORDS = "the a of is in and cats dogs sleep bark fish swim birds fly sun hot cold ice".split()
TEXTS = [
    "cats sleep in the sun",
    "dogs bark and fish swim",
    "birds fly in the cold",
    "ice is cold",
    "the sun is hot",
    "a fish of the sea",
]


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT cross-encoder with a locally written vocabulary."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder = tmp_path_factory.mktemp("cross-encoder")
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    vocab = {token: i for i, token in enumerate(vocab_file.read_text().split())}
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    assert tokenizer.convert_tokens_to_ids("cats") == vocab["cats"]
    config = BertConfig(
        vocab_size=5 + len(WORDS),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=1,
        initializer_range=0.5,  # spread the random scores so the order is well defined
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def hits() -> list[Hit]:
    return [
        Hit(
            chunk_id=i,
            document_id="d",
            collection="default",
            filename="f.txt",
            ordinal=i,
            text=text,
            page_start=1,
            page_end=1,
            score=1.0 / (i + 1),
            dense_rank=i + 1,
        )
        for i, text in enumerate(TEXTS)
    ]


def own_scores(folder: Path, question: str) -> list[float]:
    """The model's logits for each (question, text) pair, computed with transformers directly."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    batch = tokenizer([question] * len(TEXTS), TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return model(**batch).logits[:, 0].tolist()


def test_rerank_orders_by_the_models_own_scores(tiny_cross_encoder: Path) -> None:
    question = "do cats sleep in the sun"
    reranker = CrossEncoderReranker(tiny_cross_encoder, batch_size=4)
    result = reranker.rerank(question, hits(), top_k=4)
    logits = own_scores(tiny_cross_encoder, question)
    expected = sorted(range(len(TEXTS)), key=lambda i: -logits[i])[:4]
    assert len(set(logits)) == len(TEXTS)
    assert [h.chunk_id for h in result] == expected
    scores = [h.rerank_score for h in result]
    assert all(s is not None for s in scores)
    assert scores == sorted(scores, reverse=True)
    # fused score and ranks are kept; only rerank_score is new
    original = {h.chunk_id: h for h in hits()}
    for h in result:
        assert h.score == original[h.chunk_id].score
        assert h.dense_rank == original[h.chunk_id].dense_rank
        assert original[h.chunk_id].rerank_score is None


def test_rerank_edge_cases(tiny_cross_encoder: Path) -> None:
    reranker = CrossEncoderReranker(tiny_cross_encoder)
    assert reranker.rerank("cats", [], top_k=3) == []
    assert len(reranker.rerank("cats", hits(), top_k=100)) == len(TEXTS)
    with pytest.raises(InvalidInput, match="top_k must be at least 1, got 0"):
        reranker.rerank("cats", hits(), top_k=0)


def test_missing_or_invalid_folder_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RERANKER_PATH"):
        CrossEncoderReranker(tmp_path / "absent")
    with pytest.raises(InvalidInput, match="batch_size"):
        CrossEncoderReranker(tmp_path, batch_size=0)
