"""Answer-level measures against hand-computed cases (English and Chinese)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eval.answer_metrics import (
    answer_language,
    answer_sentences,
    answer_tokens,
    citation_scores,
    contains_gold,
    first_sentence,
    normalize_answer,
    percentile,
    supports,
    token_f1,
)
from eval.answer_runner import is_refusal, parse_generators, score_question, summarize
from eval.qa import QaQuestion, is_qa_folder, load_qa
from rag.errors import InvalidInput, ParseError
from rag.types import Answer, AnswerFlags

pytestmark = pytest.mark.unit

ROLLO = "Rollo led the Normans."
NORWAY = "They came from Norway."


# --- normalisation and correctness -------------------------------------------------------
def test_squad_normalisation_drops_case_punctuation_articles_and_markers() -> None:
    assert normalize_answer("The Normans, in  France! [1]") == "normans in france"
    assert normalize_answer("an U.S. army") == "us army"  # SQuAD deletes punctuation


def test_chinese_normalisation_is_nfkc_without_punctuation_or_spaces() -> None:
    assert normalize_answer("“踢爆”。 [2]", "zh") == "踢爆"
    assert normalize_answer("４ 分钟", "zh") == "4分钟"  # full-width digit folded
    assert answer_tokens("4分钟 abc", "zh") == ["4", "分", "钟", "abc"]


def test_token_f1_english_by_hand() -> None:
    # prediction "in france" vs gold "france": P = 1/2, R = 1, F1 = 2/3.
    assert token_f1("in France [1].", ["France"]) == pytest.approx(2 / 3)
    # best over gold spans; articles do not count
    golds = ["10th century", "in the 10th and 11th centuries"]
    assert token_f1("In the 10th and 11th centuries.", golds) == 1.0
    assert token_f1("Rollo", ["France"]) == 0.0
    assert token_f1("anything", []) == 0.0  # unanswerable: nothing to match


def test_token_f1_chinese_by_character() -> None:
    # 13 characters predicted (若游戏中离4分钟内不得配对), 3 gold (4 分 钟), all 3 shared:
    # P = 3/13, R = 1, F1 = 2 * 3/13 / (16/13) = 6/16.
    assert token_f1("若游戏中离，4分钟内不得配对。", ["4分钟"], "zh") == pytest.approx(0.375)
    assert token_f1("踢爆[1]。", ["踢爆"], "zh") == 1.0


def test_contains_gold_matches_whole_words_in_english_and_characters_in_chinese() -> None:
    assert contains_gold("Normandy is a region in France [1].", ["France"])
    assert not contains_gold("It lies within Europe.", ["in"])
    assert contains_gold("游戏中离线，则４分钟内不得配对", ["4分钟"], "zh")
    assert not contains_gold("anything", [])


def test_first_sentence_keeps_markers_written_after_the_stop() -> None:
    text = "Rollo led them. [1] They came from Norway [2]. 好的。"
    assert answer_sentences(text) == [
        ("Rollo led them. [1]", [1]),
        ("They came from Norway [2].", [2]),
        ("好的。", []),
    ]
    assert first_sentence(text) == "Rollo led them. [1]"
    assert first_sentence("") == ""


def test_language_follows_the_question() -> None:
    assert answer_language("生命数耗完即算为什么？", ["踢爆"]) == "zh"
    assert answer_language("In what country is Normandy located?", ["France"]) == "en"


# --- citation support (ALCE) -----------------------------------------------------------
def test_support_by_gold_span_or_by_term_coverage() -> None:
    passage = "Normandy is a region in France."
    sentence = "The answer is France, a country in Europe [1]."
    # content terms {answer, franc, countri, europ}: the passage holds 1 of 4 (< 0.8) ...
    assert not supports(passage, sentence)
    # ... but the sentence states the gold span, and the passage holds it.
    assert supports(passage, sentence, ["France"])
    assert supports(ROLLO, "Rollo led the Normans [1].")  # quoted: all terms
    assert not supports(NORWAY, "Rollo led the Normans [1].")


def test_chinese_support_by_term_coverage() -> None:
    passage = "泡泡战士是由韩国Nexon开发与发行的游戏。"
    assert supports(passage, "泡泡战士由韩国Nexon开发[1]。", language="zh")
    assert not supports("普洱茶属于黑茶。", "泡泡战士由韩国Nexon开发[1]。", language="zh")


def test_alce_precision_drops_a_citation_that_is_not_needed() -> None:
    # One sentence, supported by [1] alone; [2] alone does not support it and
    # removing it keeps the support: recall 1/1, precision 1/2.
    scores = citation_scores("Rollo led the Normans [1][2].", {1: ROLLO, 2: "Tea is green."})
    assert (scores.recall, scores.precision, scores.sentences, scores.citations) == (1.0, 0.5, 1, 2)


def test_alce_joint_support_needs_both_citations() -> None:
    # Terms {rollo, led, norman, norway}: [1] holds 3/4 = 0.75, [2] holds 1/4,
    # together 4/4: supported, and removing either breaks it, so both are needed.
    scores = citation_scores("Rollo led the Normans from Norway [1, 2].", {1: ROLLO, 2: NORWAY})
    assert (scores.recall, scores.precision) == (1.0, 1.0)


def test_alce_recall_counts_uncited_and_unsupported_sentences() -> None:
    passages = {1: ROLLO, 2: "Tea is green."}
    # s1 supported by [1]; s2 cites [2], which does not support it; s3 cites nothing.
    text = "Rollo led the Normans [1]. They came from Norway [2]. They were Vikings."
    scores = citation_scores(text, passages)
    assert scores.recall == pytest.approx(1 / 3)
    assert scores.precision == pytest.approx(1 / 2)  # 2 citations, 1 needed
    # A marker naming no source makes its sentence unsupported (ALCE).
    invalid = citation_scores("Rollo led the Normans [3].", passages)
    assert (invalid.recall, invalid.precision) == (0.0, 0.0)
    assert citation_scores("", passages).recall is None


# --- per question and summary ----------------------------------------------------------
def _question(answers: tuple[str, ...], document: str | None = "Normans.md") -> QaQuestion:
    return QaQuestion("q", "In what country is Normandy located?", answers, document)


def test_scores_of_a_right_answer_a_refusal_and_an_unanswerable_question() -> None:
    right = score_question(
        _question(("France",)),
        "Normandy is in France [1].",
        False,
        {1: "Normandy, France."},
        ["Normans.md"],
    )
    assert right["contains_gold"] and right["gold_doc_cited"]
    # "normandy is in france" vs "france": P = 1/4, R = 1, F1 = 2 * 1/4 / (5/4) = 0.4
    assert right["f1"] == pytest.approx(0.4)
    assert right["citation_recall"] == 1.0
    wrongly_refused = score_question(_question(("France",)), "Not found.", True, {}, [])
    assert wrongly_refused["refused"] and wrongly_refused["f1"] == 0.0
    assert wrongly_refused["gold_doc_cited"] is False and wrongly_refused["citation_recall"] is None
    refused = score_question(_question((), None), "Not found.", True, {}, [])
    assert refused["refused"] and refused["contains_gold"] is None and refused["f1"] is None


def test_summary_rates_apply_to_the_questions_they_concern() -> None:
    def row(scores: dict, fallback: bool, answer: str, total: float) -> dict:
        return {
            "scores": scores,
            "flags": {"fallback_used": fallback},
            "answer": answer,
            "tokens_generated": None,
            "timings": {"total": total, "retrieval": total / 2},
        }

    right = score_question(_question(("France",)), "France [1].", False, {1: "France."}, ["x"])
    refused = score_question(_question(("France",)), "No.", True, {}, [])
    unanswerable = score_question(_question((), None), "No.", True, {}, [])
    answered_anyway = score_question(_question((), None), "Rollo [1].", False, {1: "Rollo."}, [])
    rows = [
        row(right, False, "France [1].", 1.0),
        row(refused, True, "No.", 2.0),
        row(unanswerable, False, "No.", 3.0),
        row(answered_anyway, False, "Rollo [1].", 4.0),
    ]
    summary, latency = summarize(rows)
    assert summary["contains_gold"] == 0.5  # answerable only: right, refused
    assert summary["answerable_refused"] == 0.5
    assert summary["unanswerable_refused"] == 0.5
    assert summary["gold_doc_cited"] == 0.0  # cited "x", not Normans.md
    assert summary["fallback_rate"] == 0.25
    assert summary["citation_recall"] == 1.0  # over the two answers that are not refusals
    assert summary["answer_chars_p50"] == 10.5  # non-refusals: 11 and 10 characters
    assert summary["latency_p50"] == 2.5 and latency["retrieval"]["p50"] == 1.25
    assert summary["tokens_generated_mean"] is None


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == pytest.approx(3.85)
    assert percentile([], 50) is None


def test_refusal_reads_the_pipeline_flags() -> None:
    flags = AnswerFlags(not_found=True)
    assert is_refusal(Answer("q", "The knowledge base does not contain it.", (), flags))
    assert not is_refusal(Answer("q", "France [1].", (), AnswerFlags()))


def test_generator_list_is_checked() -> None:
    assert parse_generators("transformers, extractive,extractive") == ["transformers", "extractive"]
    with pytest.raises(InvalidInput, match="generators must be"):
        parse_generators("extractive,gpt5")


# --- QA folders ------------------------------------------------------------------------
def test_qa_folder_detection_and_loading(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\nText.\n")
    (tmp_path / "questions.jsonl").write_text(
        '{"id": "1", "question": "Q1?", "document": "a.md", "answers": ["Text"]}\n'
        '{"id": "2", "question": "Q2?", "document": null, "answers": []}\n'
        '{"id": "3", "question": " ", "document": "a.md", "answers": ["Text"]}\n'
    )
    assert is_qa_folder(tmp_path)
    dataset = load_qa(tmp_path)
    assert dataset.summary()["answerable"] == 1 and dataset.summary()["unanswerable"] == 1
    assert dataset.skipped == 1  # an empty question is left out, not asked
    assert [q.qid for q in dataset.head(1).questions] == ["1"]
    with pytest.raises(InvalidInput, match="limit"):
        dataset.head(0)
    (tmp_path / "questions.jsonl").write_text('{"question": "Q?", "document": "b.md"}\n')
    with pytest.raises(ParseError, match="line 1"):
        load_qa(tmp_path)
    (tmp_path / "corpus.jsonl").write_text("")
    assert not is_qa_folder(tmp_path)  # a BEIR folder stays a BEIR folder


def test_recording_generator_keeps_the_raw_completion() -> None:
    from eval.answer_runner import RecordingGenerator

    class Echo:
        context_length = 512
        last_stats = "stats"

        def generate(self, messages, *, max_new_tokens):  # type: ignore[no-untyped-def]
            return messages[-1]["content"][:max_new_tokens]

        def stream(self, messages, *, max_new_tokens):  # type: ignore[no-untyped-def]
            yield from ("a", "b")

    recorder = RecordingGenerator(Echo())
    assert recorder.context_length == 512 and recorder.last_stats == "stats"
    assert recorder.generate([{"role": "user", "content": "hello"}], max_new_tokens=4) == "hell"
    assert recorder.last_text == "hell"
    assert list(recorder.stream([], max_new_tokens=4)) == ["a", "b"] and recorder.last_text == "ab"
    recorder.reset()
    assert recorder.last_text is None and recorder.last_stats is None
