from __future__ import annotations

import pytest

from rag.errors import GeneratorUnavailable, InvalidInput
from rag.generation.extractive import ExtractiveGenerator, cite_sentence
from rag.protocols import Generator
from rag.text.sentences import sentences
from rag.types import Hit

pytestmark = pytest.mark.unit


def hit(text: str, chunk_id: int = 1) -> Hit:
    return Hit(
        chunk_id=chunk_id,
        document_id=f"d{chunk_id}",
        collection="default",
        filename=f"doc{chunk_id}.pdf",
        ordinal=0,
        text=text,
        page_start=1,
        page_end=1,
        score=1.0,
    )


def test_picks_best_supported_sentences_with_markers() -> None:
    sources = [
        hit("The museum opens at nine. Tickets cost ten euros for adults.", 1),
        hit("Paris is the capital of France. The Seine flows through Paris.", 2),
        hit("France has many regions. Its capital city Paris hosts the government.", 3),
    ]
    answer = ExtractiveGenerator().answer("What is the capital of France?", sources)
    # Sentences holding under two thirds of the best overlap ("France has many
    # regions") are left out as noise.
    assert answer == "Paris is the capital of France [2]."
    assert "museum" not in answer


def test_marker_stays_inside_its_sentence_for_splitting() -> None:
    answer = ExtractiveGenerator(max_sentences=2).answer(
        "capital of France",
        [hit("Paris is the capital of France. France's capital hosts the government.")],
    )
    parts = sentences(answer)
    assert parts == [
        "Paris is the capital of France [1].",
        "France's capital hosts the government [1].",
    ]


def test_weak_matches_are_left_out() -> None:
    sources = [hit("Aspirin reduces fever and pain in adults. Adults sleep at night.")]
    answer = ExtractiveGenerator().answer("Does aspirin reduce fever in adults?", sources)
    assert answer == "Aspirin reduces fever and pain in adults [1]."


def test_no_overlap_falls_back_to_first_sentence_of_first_source() -> None:
    sources = [hit("Alpha beta gamma. Delta epsilon.", 1), hit("Zeta eta.", 2)]
    assert ExtractiveGenerator().answer("unrelated question words", sources) == (
        "Alpha beta gamma [1]."
    )


def test_chinese_sentences_and_markers() -> None:
    sources = [
        hit("北京是中国的首都。上海是最大的城市！今天天气很好？", 1),
        hit("长城位于北方。首都北京是中国的政治中心。", 2),
    ]
    answer = ExtractiveGenerator(max_sentences=2).answer("中国的首都是哪里？", sources)
    assert answer == "北京是中国的首都[1]。首都北京是中国的政治中心[2]。"
    assert sentences(answer) == ["北京是中国的首都[1]。", "首都北京是中国的政治中心[2]。"]


def test_chinese_fallback_and_mixed_text() -> None:
    sources = [hit("量子计算很复杂。它需要低温。", 1)]
    assert ExtractiveGenerator().answer("天气如何", sources) == "量子计算很复杂[1]。"
    assert cite_sentence("没有标点的句子", 2) == "没有标点的句子[2]。"
    assert cite_sentence("No punctuation here", 3) == "No punctuation here [3]."
    assert cite_sentence('He said "stop."', 1) == 'He said "stop [1]."'


def test_duplicate_sentences_are_quoted_once_and_long_ones_shortened() -> None:
    text = "Solar panels convert sunlight into power. " * 2 + "word " * 200 + "solar power."
    gen = ExtractiveGenerator(max_sentence_chars=60)
    answer = gen.answer("How do solar panels make power?", [hit(text)])
    assert answer.count("Solar panels convert sunlight") == 1
    assert all(len(s) <= 70 for s in sentences(answer))


def test_protocol_methods_point_to_answer() -> None:
    gen = ExtractiveGenerator()
    assert isinstance(gen, Generator)
    assert gen.count_tokens("abcd efgh") == 3
    with pytest.raises(GeneratorUnavailable, match="answer\\(question, sources\\)"):
        gen.generate([{"role": "user", "content": "hi"}], max_new_tokens=5)
    with pytest.raises(GeneratorUnavailable):
        gen.stream([{"role": "user", "content": "hi"}], max_new_tokens=5)
    with pytest.raises(InvalidInput, match="at least one source"):
        gen.answer("question", [])
    with pytest.raises(InvalidInput, match="max_sentences"):
        ExtractiveGenerator(max_sentences=0)


def test_short_answer_comes_first_with_the_same_marker() -> None:
    sources = [
        hit("The treaty was signed at the river. Later the duke moved north.", 1),
        hit("They swore fealty under their leader Rollo in 911 to King Charles III.", 2),
    ]
    reader = ExtractiveGenerator(max_sentences=1)
    assert reader.answer("In what year did they swear fealty?", sources) == (
        "911 [2]. They swore fealty under their leader Rollo in 911 to King Charles III [2]."
    )
    plain = ExtractiveGenerator(max_sentences=1, short_answer=False)
    assert plain.answer("In what year did they swear fealty?", sources) == (
        "They swore fealty under their leader Rollo in 911 to King Charles III [2]."
    )


def test_rare_question_terms_outweigh_common_ones() -> None:
    # "normans" is in every sentence, "treaty" in one: the treaty sentence answers.
    sources = [
        hit("The Normans were famous. The Normans built castles. The Normans sailed far.", 1),
        hit("A treaty gave the Normans their land.", 2),
    ]
    best = ExtractiveGenerator(max_sentences=1).best_sentences(
        "Which treaty did the Normans sign?", sources
    )
    assert [(e.source, e.text) for e in best] == [(2, "A treaty gave the Normans their land.")]


def test_a_sentence_with_the_asked_kind_of_answer_ranks_first() -> None:
    sources = [hit("Hervé served as a Byzantine general. Hervé served in the 1050s as general.")]
    best = ExtractiveGenerator(max_sentences=1).best_sentences(
        "When did Hervé serve as a general?", sources
    )
    assert best[0].text == "Hervé served in the 1050s as general."
