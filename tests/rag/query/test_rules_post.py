from __future__ import annotations

from collections.abc import Sequence

import pytest

from rag.errors import InvalidInput
from rag.query.rules_post import (
    AnswerDraft,
    AnswerLengthCapRule,
    AnswerRule,
    CitationCheckRule,
    RedactionRule,
    RepetitionRule,
    TemplateCleanupRule,
    build_answer_rules,
    find_loop,
    luhn_valid,
    redact_text,
    run_answer_rules,
    says_not_found,
    valid_cn_id,
)
from rag.settings import RulesSettings
from rag.types import AnswerFlags, Hit
from tests.rag.query.hits import make_hit

pytestmark = pytest.mark.unit

EN_SOURCES = (
    make_hit(1, "Metformin is the first-line treatment for type 2 diabetes in adults."),
    make_hit(2, "Insulin is used when oral drugs fail to control blood glucose."),
)
ZH_SOURCES = (
    make_hit(1, "二甲双胍是2型糖尿病的一线治疗药物，可以降低血糖。"),
    make_hit(2, "胰岛素用于口服药物无法控制血糖的患者。"),
)


class RecordingFallback:
    """An extractive stand-in that records what it was asked."""

    def __init__(self, answer: str = "Metformin is the first-line treatment [1].") -> None:
        self.answer = answer
        self.calls: list[tuple[tuple[Hit, ...], str]] = []

    def __call__(self, sources: Sequence[Hit], question: str) -> str:
        self.calls.append((tuple(sources), question))
        return self.answer


def draft(text: str, sources: tuple[Hit, ...] = EN_SOURCES, question: str = "q?") -> AnswerDraft:
    return AnswerDraft(text=text, sources=sources, question=question)


# --- TemplateCleanupRule ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (
            "<|im_start|>assistant\nMetformin [1].<|im_end|>\n<|im_start|>user\nmore?",
            "Metformin [1].",
        ),
        ("Assistant: Metformin is first-line.</s>", "Metformin is first-line."),
        ("Metformin.<|endoftext|>Human: next", "Metformin."),
        ("It is metformin.\nUser: and insulin?", "It is metformin."),
        ("答案：二甲双胍。<|im_end|>", "二甲双胍。"),
        ("[INST] Metformin [/INST]", "Metformin"),
        ("<|eot_id|>Metformin", "Metformin"),
    ],
)
def test_template_cleanup(raw: str, clean: str) -> None:
    out = TemplateCleanupRule().apply(draft(raw))
    assert out.text == clean
    assert "template tokens removed" in out.notes


def test_template_cleanup_leaves_clean_text() -> None:
    before = draft("Metformin is first-line [1].")
    assert TemplateCleanupRule().apply(before) is before


# --- RepetitionRule --------------------------------------------------------------------


def test_repeated_sentences_collapsed() -> None:
    text = "Metformin helps. It is cheap [1]. Metformin helps! It is cheap [2]. Metformin helps."
    out = RepetitionRule().apply(draft(text))
    assert out.text == "Metformin helps. It is cheap [1]."
    assert any("dropped 3" in n for n in out.notes)
    assert not out.flags.truncated


def test_repeated_chinese_sentences_collapsed() -> None:
    out = RepetitionRule().apply(draft("糖尿病需要治疗。糖尿病需要治疗。饮食也很重要。"))
    assert out.text == "糖尿病需要治疗。饮食也很重要。"


def test_runaway_loop_cut() -> None:
    text = "Metformin lowers glucose, and glucose, and glucose, and glucose, and glucose, and gl"
    out = RepetitionRule().apply(draft(text))
    assert out.text == "Metformin lowers glucose, and"
    assert out.flags.truncated


def test_chinese_loop_cut() -> None:
    out = RepetitionRule().apply(draft("二甲双胍可以" + "降低血糖" * 8))
    assert out.text == "二甲双胍可以降低血糖"


@pytest.mark.parametrize(
    "text",
    [
        "It is very very effective.",
        "| a | b |\n| --- | --- |\n| ------ | ------------- |",
        "Doses were 1, 2, 4 and 8 mg.",
        "哈哈，谢谢。",
    ],
)
def test_ordinary_text_is_not_a_loop(text: str) -> None:
    assert find_loop(text) is None
    before = draft(text)
    assert RepetitionRule().apply(before) is before


# --- CitationCheckRule -----------------------------------------------------------------


def test_supported_citation_kept() -> None:
    before = draft("Metformin is the first-line treatment for type 2 diabetes [1].")
    assert CitationCheckRule(RecordingFallback()).apply(before) is before


def test_citation_to_no_source_removed() -> None:
    out = CitationCheckRule(RecordingFallback()).apply(
        draft("Metformin is the first-line treatment for type 2 diabetes [1][7].")
    )
    assert out.text == "Metformin is the first-line treatment for type 2 diabetes [1]."
    assert any("no source" in n and "7" in n for n in out.notes)


def test_unsupported_citation_dropped() -> None:
    out = CitationCheckRule(RecordingFallback()).apply(
        draft(
            "Metformin is the first-line treatment for type 2 diabetes [1, 2]. "
            "Insulin is used when oral drugs fail [2]."
        )
    )
    assert out.text == (
        "Metformin is the first-line treatment for type 2 diabetes [1]. "
        "Insulin is used when oral drugs fail [2]."
    )
    assert not out.flags.fallback_used


def test_marker_after_full_stop_belongs_to_previous_sentence() -> None:
    before = draft("Metformin is the first-line treatment for diabetes. [1] Insulin is used [2].")
    out = CitationCheckRule(RecordingFallback()).apply(before)
    assert out is before


def test_no_citation_uses_fallback() -> None:
    fallback = RecordingFallback()
    out = CitationCheckRule(fallback).apply(
        draft("Metformin is the first-line treatment.", question="what first?")
    )
    assert out.text == fallback.answer
    assert out.flags.fallback_used and not out.flags.not_found
    assert fallback.calls == [(EN_SOURCES, "what first?")]


def test_mostly_unsupported_answer_uses_fallback() -> None:
    fallback = RecordingFallback()
    text = (
        "Metformin is the first-line treatment for type 2 diabetes [1]. "
        "The moon is made of green cheese. Elephants regularly fly over mountains."
    )
    out = CitationCheckRule(fallback).apply(draft(text))
    assert out.flags.fallback_used
    assert any("1 of 3" in n for n in out.notes)


def test_uncited_but_grounded_sentence_counts_as_supported() -> None:
    text = (
        "Metformin is the first-line treatment for type 2 diabetes [1]. "
        "Insulin is used when oral drugs fail."
    )
    before = draft(text)
    assert CitationCheckRule(RecordingFallback()).apply(before) is before


@pytest.mark.parametrize(
    "text",
    [
        "The sources do not contain the answer.",
        "This is not mentioned in the provided sources [3].",
        "I could not find this in the documents.",
        "资料中没有找到答案。",
        "提供的资料未提及该药物的价格。",
    ],
)
def test_not_found_answer_kept(text: str) -> None:
    fallback = RecordingFallback()
    out = CitationCheckRule(fallback).apply(draft(text))
    assert out.flags.not_found and not out.flags.fallback_used
    assert fallback.calls == []
    assert "[3]" not in out.text


@pytest.mark.parametrize(
    "text",
    [
        "The question is in Chinese: answer in Chinese. 请用中文回答；如果资料中没有答案，"
        "请直接说明“资料中没有找到答案”。",
        "The answer is: 二甲双胍又称作什么；如果资料中没有答案，请直接说明。",
        "Use only facts stated in the sources; the sources do not contain the answer.",
    ],
)
def test_an_answer_that_repeats_the_instructions_is_not_a_refusal(text: str) -> None:
    fallback = RecordingFallback()
    out = CitationCheckRule(fallback).apply(draft(text, ZH_SOURCES, "二甲双胍是什么？"))
    assert out.flags.fallback_used and not out.flags.not_found
    assert out.text == fallback.answer
    assert any("repeats the instructions" in n for n in out.notes)


def test_says_not_found_negative() -> None:
    assert not says_not_found("Metformin is first-line [1].")
    assert not says_not_found("二甲双胍可以降低血糖。")


def test_chinese_citation_overlap() -> None:
    supported = draft(
        "二甲双胍是治疗2型糖尿病的一线药物[1]。胰岛素用于口服药物无效的患者[2]。", ZH_SOURCES
    )
    assert CitationCheckRule(RecordingFallback()).apply(supported) is supported

    mixed = draft(
        "二甲双胍是治疗2型糖尿病的一线药物[1][2]。胰岛素用于口服药物无效的患者[2]。", ZH_SOURCES
    )
    out = CitationCheckRule(RecordingFallback()).apply(mixed)
    assert out.text == "二甲双胍是治疗2型糖尿病的一线药物[1]。胰岛素用于口服药物无效的患者[2]。"


def test_chinese_unsupported_citation_falls_back() -> None:
    fallback = RecordingFallback("二甲双胍是2型糖尿病的一线治疗药物[1]。")
    out = CitationCheckRule(fallback).apply(draft("月球上有很多奶酪和大象[1]。", ZH_SOURCES))
    assert out.flags.fallback_used
    assert out.text == fallback.answer


def test_empty_answer_and_no_sources_use_fallback() -> None:
    fallback = RecordingFallback("The sources do not contain the answer.")
    out = CitationCheckRule(fallback).apply(draft("   "))
    assert out.flags.fallback_used
    out = CitationCheckRule(fallback).apply(draft("Metformin works [1].", sources=()))
    assert out.flags.fallback_used and out.flags.not_found


def test_citation_check_validates() -> None:
    with pytest.raises(InvalidInput, match="min_citation_overlap must be between 0 and 1"):
        CitationCheckRule(RecordingFallback(), min_overlap=1.5)


# --- RedactionRule ---------------------------------------------------------------------

VALID_ID = "11010519491231002X"  # check character X is correct
INVALID_ID = "110105194912310021"


def test_id_checksum() -> None:
    assert valid_cn_id(VALID_ID) and valid_cn_id(VALID_ID.lower())
    assert not valid_cn_id(INVALID_ID)
    assert not valid_cn_id("12345")


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert luhn_valid("378282246310005")  # Amex test number
    assert not luhn_valid("4111111111111112")
    assert not luhn_valid("4111-1111")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("mail jane.doe+kb@example.co.uk today", "email"),
        ("手机 13812345678 联系", "phone"),
        ("call +86 138 1234 5678 now", "phone"),
        ("call +86-13812345678 now", "phone"),
        ("call 0086 13812345678 now", "phone"),
        ("call (415) 555-2671 now", "phone"),
        ("call 415-555-2671 now", "phone"),
        ("call +1 415 555 2671 now", "phone"),
        ("call +44 20 7946 0958 now", "phone"),
        ("电话 010-12345678 转", "phone"),
        (f"身份证号{VALID_ID}。", "id_number"),
        ("card 4111 1111 1111 1111 ok", "card"),
        ("card 4111-1111-1111-1111 ok", "card"),
        ("card 4111111111111111 ok", "card"),
        ("amex 3782 822463 10005 ok", "card"),
    ],
)
def test_redacts(text: str, kind: str) -> None:
    out = RedactionRule().apply(draft(text))
    assert f"[REDACTED:{kind}]" in out.text
    assert out.flags.redacted
    assert not any(ch.isdigit() for ch in out.text.split("[REDACTED")[0][-3:])


@pytest.mark.parametrize(
    "text",
    [
        f"身份证号{INVALID_ID}。",
        "card 4111111111111112 ok",
        "In 2023 [1], 3 of 120 patients (2.5%) improved; see pages 12-14.",
        "ISBN 978-3-16-148410-0, version 1.2.3, DOI 10.1000/182.",
        "剂量为500毫克，每日2次[2]。",
    ],
)
def test_does_not_redact(text: str) -> None:
    before = draft(text)
    out = RedactionRule().apply(before)
    assert out is before and not out.flags.redacted


def test_sensitive_words() -> None:
    rule = RedactionRule(["Project Falcon", "机密", "ass"])
    out = rule.apply(draft("PROJECT FALCON is 机密 but this class is open."))
    assert out.text == "[REDACTED:sensitive] is [REDACTED:sensitive] but this class is open."
    assert any("sensitive=2" in n for n in out.notes)


def test_redact_text_counts() -> None:
    text, counts = redact_text("a@b.io, c@d.io, 13912345678")
    assert text == "[REDACTED:email], [REDACTED:email], [REDACTED:phone]"
    assert counts == {"email": 2, "phone": 1}


# --- AnswerLengthCapRule ---------------------------------------------------------------


def test_length_cap_cuts_at_sentence() -> None:
    text = "First sentence is here. Second sentence is here. Third sentence is long."
    out = AnswerLengthCapRule(50).apply(draft(text))
    assert out.text == "First sentence is here. Second sentence is here."
    assert out.flags.truncated


def test_length_cap_chinese_sentence() -> None:
    text = "二甲双胍是一线药物。" * 3 + "胰岛素用于控制血糖。"
    out = AnswerLengthCapRule(25).apply(draft(text))
    assert out.text == "二甲双胍是一线药物。二甲双胍是一线药物。"


def test_length_cap_without_sentence_end() -> None:
    text = "word " * 40 + "see [12"
    out = AnswerLengthCapRule(60).apply(draft(text))
    assert len(out.text) <= 60 and out.text.endswith("…")
    assert out.flags.truncated and "[" not in out.text


def test_length_cap_short_text_unchanged() -> None:
    before = draft("Short.")
    assert AnswerLengthCapRule(50).apply(before) is before


def test_length_cap_validates() -> None:
    with pytest.raises(InvalidInput, match="at least 2, got 1"):
        AnswerLengthCapRule(1)


# --- building and running ----------------------------------------------------------------


def test_build_answer_rules() -> None:
    rules = build_answer_rules(RulesSettings(), RecordingFallback())
    assert [r.name for r in rules] == [
        "template_cleanup",
        "repetition",
        "citation_check",
        "redaction",
        "length_cap",
    ]
    assert all(isinstance(r, AnswerRule) for r in rules)
    off = RulesSettings(repetition=False, citation_check=False, redact=False)
    assert [r.name for r in build_answer_rules(off, RecordingFallback())] == [
        "template_cleanup",
        "length_cap",
    ]


def test_run_answer_rules_end_to_end() -> None:
    rules = build_answer_rules(RulesSettings(max_answer_chars=200), RecordingFallback())
    raw = (
        "<|im_start|>assistant\nMetformin is the first-line treatment for type 2 diabetes [1][9]. "
        "Metformin is the first-line treatment for type 2 diabetes [1]. "
        "Ask jane@example.com for details [1].<|im_end|>garbage"
    )
    out = run_answer_rules(
        rules, raw, EN_SOURCES, question="q", flags=AnswerFlags(injection_detected=True)
    )
    assert out.text.startswith("Metformin is the first-line treatment for type 2 diabetes [1].")
    assert "[9]" not in out.text and "garbage" not in out.text
    assert out.text.count("Metformin") == 1
    assert "[REDACTED:email]" in out.text and out.flags.redacted
    assert out.flags.injection_detected
    assert not out.flags.fallback_used
    assert out.question == "q" and out.sources == EN_SOURCES


def test_an_answer_that_only_repeats_the_question_falls_back() -> None:
    fallback = RecordingFallback()
    question = "What is metformin the first-line treatment for?"
    out = CitationCheckRule(fallback).apply(draft("Metformin [1].", question=question))
    assert out.flags.fallback_used and out.text == fallback.answer
    assert any("only repeat the question" in n for n in out.notes)
    kept = CitationCheckRule(fallback).apply(draft("Type 2 diabetes [1].", question=question))
    assert not kept.flags.fallback_used and kept.text == "Type 2 diabetes [1]."


def test_the_extractive_answer_itself_is_not_flagged_as_a_fallback() -> None:
    fallback = RecordingFallback("Metformin [1].")
    out = CitationCheckRule(fallback).apply(
        draft("Metformin [1].", question="Is metformin the first-line treatment?")
    )
    assert out.text == "Metformin [1]." and not out.flags.fallback_used
