"""Retrieval options end to end: neighbour expansion, the cross-encoder reranker, real PDFs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ingest.service import build_ingest_service
from rag.query.retrieval import HybridRetriever
from rag.rerank import CrossEncoderReranker
from rag.services import Services, build_services
from tests.conftest import fast_settings
from tests.rag.query.fakes import RecordingGenerator

pytestmark = pytest.mark.integration

TOPICS = [
    "Copper wiring carries current through the old factory walls",
    "Swallows migrate south before the first autumn frost arrives",
    "The harbour pilot guides tankers past the shallow sandbanks",
    "Sourdough starter needs flour and water every single morning",
    "Glaciers carve deep valleys while moving a few metres yearly",
    "The violinist tuned her instrument before the evening concert",
    "Volcanic ash enriches the soil of the surrounding vineyards",
    "Librarians catalogue rare manuscripts in climate controlled vaults",
    "The marathon route crosses four bridges over the river delta",
    "Beekeepers smoke the hive gently before lifting the honey frames",
    "Telescope mirrors are polished to a fraction of a wavelength",
    "Fishermen mend their nets on the quay after the storm passes",
    "The cartographer redrew the coastline after the earthquake",
    "Orchard owners prune apple trees during the dormant winter months",
    "Submarine cables link continents beneath thousands of metres of ocean",
    "The blacksmith quenches hot iron in a barrel of brine",
    "Desert nomads navigate by the positions of bright stars",
    "Chess grandmasters study endgames for many hours each week",
    "The lighthouse keeper logs passing ships in a leather journal",
    "Potters fire stoneware in kilns heated above twelve hundred degrees",
]
LONG_TEXT = " ".join(
    f"{topic}, as noted in record number {i + 1}." for i, topic in enumerate(TOPICS)
)

# The tiny cross-encoder's vocabulary, and a document written in it so the
# randomly initialised model sees distinct token sequences (distinct scores).
CE_WORDS = "the a of is in and cats dogs sleep bark fish swim birds fly sun hot cold ice".split()
CE_SENTENCES = [
    "cats sleep in the sun",
    "dogs bark and fish swim",
    "birds fly in the cold",
    "ice is cold",
    "the sun is hot",
    "a fish of the sea",
    "cats and dogs sleep in the cold",
    "birds and fish in the ice",
]


def make_tiny_cross_encoder(folder: Path) -> Path:
    """A randomly initialised 2-layer BERT cross-encoder written to ``folder`` (as test_rerank)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = folder / "vocab.txt"
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *CE_WORDS]
    vocab_file.write_text("\n".join(tokens) + "\n")
    tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(tokens),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=1,
        initializer_range=0.5,
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def ingest_text(services: Services, text: str, filename: str) -> str:
    service = build_ingest_service(services)
    outcome = service.ingest_bytes(text.encode(), filename)
    assert outcome.ok, outcome
    assert outcome.document_id is not None
    return outcome.document_id


def all_chunks(services: Services, document_id: str) -> list:
    chunks = services.kb.neighbour_chunks(document_id, range(1000))
    return sorted(chunks, key=lambda c: c.ordinal)


# ------------------------------------------------------------ neighbour expansion
@pytest.fixture
def long_doc(tmp_path: Path):
    services = build_services(
        fast_settings(
            tmp_path / "kb",
            ingest={"chunk_tokens": 40},
            retrieval={"neighbour_expansion": True},
        )
    )
    document_id = ingest_text(services, LONG_TEXT, "long.txt")
    yield services, document_id
    services.close()


def test_expand_neighbours_adds_adjacent_chunks_after_hits(long_doc) -> None:
    services, document_id = long_doc
    chunks = all_chunks(services, document_id)
    assert len(chunks) >= 5
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    middle = len(chunks) // 2
    retriever = services.retriever()

    first = retriever.retrieve(chunks[middle].text, top_k=1).hits[0]
    second = retriever.retrieve(chunks[middle + 1].text, top_k=1).hits[0]
    assert (first.ordinal, second.ordinal) == (middle, middle + 1)

    # one hit: its previous and next chunks follow it, in ordinal order
    single = retriever.expand_neighbours([first])
    assert single[0] == first
    assert [h.ordinal for h in single[1:]] == [middle - 1, middle + 1]

    # two adjacent hits: neither is repeated, only the outer neighbours are added
    hits = [first, second]
    expanded = retriever.expand_neighbours(hits)
    assert expanded[:2] == hits
    added = expanded[2:]
    assert [h.ordinal for h in added] == [middle - 1, middle + 2]
    ids = [h.chunk_id for h in expanded]
    assert len(ids) == len(set(ids))
    by_ordinal = {c.ordinal: c for c in chunks}
    for hit in added:
        chunk = by_ordinal[hit.ordinal]
        assert hit.chunk_id == chunk.id and hit.text == chunk.text
        assert hit.document_id == document_id and hit.filename == "long.txt"
        assert hit.dense_rank is None and hit.sparse_rank is None
    assert added[0].score == pytest.approx(first.score * 0.99)
    assert added[1].score == pytest.approx(second.score * 0.99)

    # the first and last chunks have only one neighbour each
    edge = retriever.expand_neighbours(
        [
            retriever.retrieve(chunks[0].text, top_k=1).hits[0],
            retriever.retrieve(chunks[-1].text, top_k=1).hits[0],
        ]
    )
    assert [h.ordinal for h in edge] == [0, len(chunks) - 1, 1, len(chunks) - 2]


def test_pipeline_with_neighbour_expansion_puts_neighbours_in_the_prompt(long_doc) -> None:
    services, document_id = long_doc
    chunks = all_chunks(services, document_id)
    middle = len(chunks) // 2
    sentence = next(
        s
        for s in re.split(r"(?<=\.) ", chunks[middle].text)
        if s not in chunks[middle - 1].text and s not in chunks[middle + 1].text
    )
    question = sentence.rstrip(".") + "?"
    recorder = RecordingGenerator(f"{sentence.rstrip('.')} [1].")
    services.register_generator("transformers", recorder)

    answer = services.pipeline().ask(question, top_k=1, generator="transformers")

    assert not answer.flags.refused and not answer.flags.not_found
    assert not answer.flags.fallback_used, answer
    assert sentence.rstrip(".") in answer.answer
    assert answer.citations[0].chunk_id == chunks[middle].id
    (messages,) = recorder.messages
    user = messages[-1]["content"]
    texts = {o: chunks[o].text.strip() for o in (middle - 1, middle, middle + 1)}
    # the retrieved hit is source [1]; its neighbours follow as [2] and [3], in ordinal order
    for number, ordinal in ((1, middle), (2, middle - 1), (3, middle + 1)):
        assert f"[{number}] long.txt, page 1:\n{texts[ordinal]}" in user, ordinal
    assert "[4]" not in user

    # without the option the prompt holds the hit alone
    plain = build_services(
        fast_settings(services.settings.data_dir, ingest={"chunk_tokens": 40}), recover=False
    )
    try:
        plain_recorder = RecordingGenerator(recorder.reply)
        plain.register_generator("transformers", plain_recorder)
        plain.pipeline().ask(question, top_k=1, generator="transformers")
        plain_user = plain_recorder.messages[0][-1]["content"]
        assert f"[1] long.txt, page 1:\n{texts[middle]}" in plain_user
        assert "[2]" not in plain_user
        assert texts[middle - 1] not in plain_user and texts[middle + 1] not in plain_user
    finally:
        plain.close()


# ----------------------------------------------------------------------- reranker
def test_reranker_orders_retrieved_hits_by_cross_encoder_score(tmp_path: Path) -> None:
    folder = make_tiny_cross_encoder(tmp_path / "cross-encoder")
    services = build_services(
        fast_settings(
            tmp_path / "kb",
            ingest={"chunk_tokens": 32, "chunk_overlap": 0.0},
            retrieval={"reranker_path": str(folder)},
        )
    )
    try:
        text = " ".join(
            f"{s.capitalize()} {s} {' '.join(CE_WORDS[i % 5 : i % 5 + 3])}."
            for i, s in enumerate(CE_SENTENCES * 3)
        )
        ingest_text(services, text, "animals.txt")
        query = "do cats sleep in the sun"
        retriever = services.retriever()
        assert isinstance(retriever.reranker, CrossEncoderReranker)
        result = retriever.retrieve(query, top_k=3)

        hits = result.hits
        assert len(hits) == 3
        scores = [h.rerank_score for h in hits]
        assert all(s is not None for s in scores)
        assert scores == sorted(scores, reverse=True)
        assert "rerank" in result.timings

        # the same reranking applied by hand to the non-reranked retrieval's candidates
        settings = services.settings.retrieval
        plain = HybridRetriever(services.kb, services.embedder, settings, None)
        pool = plain.retrieve(
            query, top_k=settings.rerank_candidates, candidates=settings.candidates
        ).hits
        assert len(pool) > 3 and all(h.rerank_score is None for h in pool)
        fresh = CrossEncoderReranker(folder)
        expected = fresh.rerank(query, pool, 3)
        all_scores = sorted(fresh.score(query, [h.text for h in pool]))
        # distinct scores, so the expected order is well defined
        assert min(b - a for a, b in zip(all_scores, all_scores[1:], strict=False)) > 1e-4
        assert [h.chunk_id for h in hits] == [h.chunk_id for h in expected]
        assert scores == pytest.approx([h.rerank_score for h in expected], abs=1e-5)
        # fused score and ranks are kept from fusion
        fused = {h.chunk_id: h for h in pool}
        for hit in hits:
            assert hit.score == fused[hit.chunk_id].score
            assert hit.dense_rank == fused[hit.chunk_id].dense_rank
            assert hit.sparse_rank == fused[hit.chunk_id].sparse_rank
    finally:
        services.close()


# ---------------------------------------------------------------------- real PDFs
def page_with(pdf: Path, phrase: str) -> int:
    """The 1-based page whose extracted text (whitespace collapsed) holds ``phrase``."""
    from pypdf import PdfReader

    pages = [
        number
        for number, page in enumerate(PdfReader(pdf).pages, start=1)
        if phrase in " ".join((page.extract_text() or "").split())
    ]
    assert len(pages) == 1, pages
    return pages[0]


def test_english_pdf_answer_cites_the_page_with_the_fact(tmp_path: Path, pdfs_dir: Path) -> None:
    name = "en_academic_tables_tableformer-arxiv2203.00274.pdf"
    pdf = pdfs_dir / name
    expected_page = page_with(pdf, "13 parameters per head per layer")
    assert expected_page == 7
    services = build_services(fast_settings(tmp_path / "kb"))
    try:
        service = build_ingest_service(services)
        assert service.ingest_path(pdf).ok
        answer = services.pipeline().ask(
            "How many attention bias scalar parameters per head per layer does TableFormer add?"
        )
        assert not answer.flags.refused, answer
        assert (name, expected_page) in {(c.filename, c.page) for c in answer.citations}
        assert "13 parameters per head per layer" in " ".join(answer.answer.split())
    finally:
        services.close()


def test_chinese_pdf_answer_cites_the_academic_page(tmp_path: Path, pdfs_dir: Path) -> None:
    services = build_services(fast_settings(tmp_path / "kb"))
    try:
        service = build_ingest_service(services)
        for name in ("zh_academic_paper-page.pdf", "zh_tables_bond-prospectus-page.pdf"):
            assert service.ingest_path(pdfs_dir / name).ok, name
        answer = services.pipeline().ask("虚拟偶像洛天依用了多少年时间成为B站当家花旦？")
        assert not answer.flags.refused, answer
        assert answer.citations
        first = answer.citations[0]
        assert (first.filename, first.page) == ("zh_academic_paper-page.pdf", 1)
        assert "洛天依" in answer.answer
        assert re.search(r"[\u4e00-\u9fff]{4,}", answer.answer)
    finally:
        services.close()
