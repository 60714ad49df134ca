"""The answer phrase of a sentence, by question type and (Chinese) by slot alignment."""

from __future__ import annotations

import pytest

from rag.generation.answer_phrase import answer_phrase, has_typed_candidate, question_type

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Who was the Norse leader?", "person"),
        ("Who was the leader when the Franks arrived?", "person"),  # the first question word
        ("When was the Duchy founded?", "date"),
        ("In what century did they arrive?", "date"),
        ("How many men were in the army?", "number"),
        ("What river bounded the Duchy?", "place"),
        ("What religion were the Normans?", None),
        ("尤金袋鼠最初是何时被发现的？", "date"),
        ("佩内塔获得过几次冠军？", "number"),
        ("该漫画是由谁创作的？", "person"),
        ("首届比赛在哪里举行？", "place"),
        ("玩家用什么泡封敌人？", None),
    ],
)
def test_question_type(question: str, kind: str | None) -> None:
    assert question_type(question) == kind


@pytest.mark.parametrize(
    ("question", "sentence", "phrase"),
    [
        (
            "Who was the Norse leader?",
            "They were raiders from Denmark who, under their leader Rollo, swore fealty.",
            "Rollo",
        ),
        ("When did Herve serve as a general?", "Hervé was a general in the 1050s.", "1050s"),
        (
            "When was the Latin word first recorded?",
            "Nortmannus was recorded in Medieval Latin in the 9th century.",
            "9th century",
        ),
        ("How many men were in Robert's army?", "Robert led an army of 30,000 men.", "30,000"),
        (
            "Where did the Normans and Byzantines sign the peace treaty?",
            "In February the Normans signed the peace treaty at Deabolis.",
            "Deabolis",
        ),
        # The name the question already holds is not the answer.
        (
            "Who was Emma's husband?",
            "Emma married King Ethelred II of England.",
            "King Ethelred II of England",
        ),
        ("第二届比赛什么时候举行的？", "第二届比赛于2009年9月27日举行。", "2009年9月27日"),
        ("佩内塔获得过几次WTA冠军？", "她共获得10次WTA单打冠军。", "10次"),
    ],
)
def test_answer_phrase(question: str, sentence: str, phrase: str) -> None:
    assert answer_phrase(question, sentence) == phrase


def test_no_phrase_without_a_kind_or_a_candidate() -> None:
    assert answer_phrase("What religion were the Normans?", "They were Catholic.") is None
    assert answer_phrase("When did it fall?", "It fell after a long siege.") is None
    assert answer_phrase("Who ruled it?", "It was ruled well.") is None
    # A Chinese 什么 question wants a clause: no phrase.
    assert answer_phrase("玩家用什么泡封敌人？", "玩家以水枪泡封敌人。") is None


def test_chinese_slot_fills_a_person_question() -> None:
    assert (
        answer_phrase("泰德·科德死前派谁给惊奇队长送信？", "泰德·科德死前派圣甲虫给惊奇队长送信。")
        == "圣甲虫"
    )


def test_typed_candidate() -> None:
    assert has_typed_candidate("When was it founded?", "It was founded in 911.")
    assert not has_typed_candidate("When was it founded?", "It was founded by Rollo.")
    assert not has_typed_candidate("What is it?", "It is 911.")
    # A Chinese slot is not evidence of a kind; a date is.
    assert not has_typed_candidate("首届比赛在哪里举行？", "首届比赛在南京举行。")
    assert has_typed_candidate("比赛什么时候举行？", "比赛于2009年举行。")
