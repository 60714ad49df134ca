"""The phrase of a source sentence that answers a question, found without a model.

A reader that quotes whole sentences is right but long: the question "Who was
the Norse leader?" wants "Rollo", not the 30 words around it. Two rules find
the phrase, both copying it from the sentence so it stays a faithful quote:

* **Answer type.** The question's wording says what kind of answer it wants
  (who → a name, when / 哪一年 → a date, how many / 多少 → a number, where →
  a place). Candidates of that kind in the sentence are the words the question
  does not already hold; the one nearest to the question's words in the
  sentence wins, since a sentence usually states the answer next to the
  words the question repeats.
* **Slot alignment (Chinese).** A Chinese question often copies the sentence
  and puts 什么 / 哪 / 谁 where the answer stands ("生命数耗完即算为什么？" ↔
  "生命数耗完即算为踢爆"); the answer is the text of the sentence between the
  longest piece of the question before the question word and the piece after it.

When neither finds a phrase, :func:`answer_phrase` returns None and the reader
answers with the sentence alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from rag.text.normalize import cjk_ratio
from rag.text.terms import term_set, tokenize

# Share of CJK characters above which a question is read as Chinese (as the prompt does).
CHINESE_QUESTION_RATIO = 0.3
# Longest phrase returned; longer "phrases" are clauses, and the sentence says it better.
MAX_PHRASE_WORDS = 8
MAX_PHRASE_CHARS_ZH = 16
# Shortest question piece that anchors a Chinese slot: one character matches anywhere.
MIN_ANCHOR_CHARS = 2

# --- answer types ----------------------------------------------------------------------
_EN_TYPES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern, re.IGNORECASE))
    for kind, pattern in (
        (
            "number",
            r"\bhow\s+(?:many|much|long|old|far|large|big|high|tall|often)\b"
            r"|\bwhat\s+(?:percentage|percent|number|amount|proportion)\b",
        ),
        (
            "date",
            r"\bwhen\b|\b(?:what|which|in\s+what)\s+(?:year|century|decade|date|month|day|era)\b",
        ),
        ("person", r"\bwho(?:m|se)?\b"),
        (
            "place",
            r"\bwhere\b|\b(?:what|which)\s+(?:country|countries|city|region|river|place|area"
            r"|island|state|town|kingdom|county|province|continent|sea|location)\b",
        ),
    )
)
_ZH_TYPES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in (
        (
            "date",
            r"哪一?年|何年|何时|什么时候|什么时间|哪一?天|几月|几号|哪个朝代|哪一?世纪|哪个年代",
        ),
        ("number", r"多少|第几|几[个次位名种年天岁人只条座所家部届级层倍]|多[大长高重远久宽深]"),
        ("person", r"谁|哪一?位|什么人|哪个人"),
        ("place", r"哪里|哪儿|何地|何处|什么地方|哪个?(?:国家|城市|省|地区|国)|哪座"),
    )
)
# The question word a Chinese slot stands in for (longest first, so 什么时候 beats 什么).
_ZH_SLOT = re.compile(
    r"什么时候|什么地方|什么人|什么|哪一[年天位个种些]|哪[个些种里儿年位国座所家条部]?|谁|多少|几[^\s]?|何[时地处人]"
)

_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen"
    "|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|hundred|thousand|million"
    "|several|dozens?|hundreds|thousands"
)
_MONTH = re.compile(rf"(?:{_MONTHS})$")
_EN_CANDIDATES: dict[str, re.Pattern[str]] = {
    "date": re.compile(
        r"\b(?:(?:early|late|mid|the\s+first\s+half\s+of\s+the|the\s+second\s+half\s+of\s+the)"
        r"\s+)?\d{1,2}(?:st|nd|rd|th)(?:\s+(?:and|or|to)\s+\d{1,2}(?:st|nd|rd|th))?"
        r"[\s-]+centur(?:y|ies)\b"
        rf"|\b(?:{_MONTHS})\s+\d{{1,2}},?\s+\d{{3,4}}\b|\b\d{{1,2}}\s+(?:{_MONTHS})\s+\d{{3,4}}\b"
        rf"|\b(?:{_MONTHS})\s+\d{{3,4}}\b|\b[1-9]\d{{2,3}}s?\b(?:\s*(?:AD|BC|CE|BCE)\b)?"
    ),
    "number": re.compile(
        r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?:\s*(?:%|percent|per\s+cent|million|billion|thousand))?"
        rf"|\b(?:{_NUMBER_WORDS})(?:[\s-]+(?:{_NUMBER_WORDS}))*\b",
        re.IGNORECASE,
    ),
    # A proper name: capitalised words, joined by "of", "the", "de"..., a regnal number after.
    "name": re.compile(
        r"\b[A-Z][\w'’\-]*(?:\s+(?:(?:of|the|de|du|di|da|von|van|le|la|al|and)\s+)*"
        r"[A-Z][\w'’\-]*|\s+[IVX]+\b)*"
    ),
}
_EN_CANDIDATES["person"] = _EN_CANDIDATES["name"]
_EN_CANDIDATES["place"] = _EN_CANDIDATES["name"]
_ZH_CANDIDATES: dict[str, re.Pattern[str]] = {
    "date": re.compile(
        r"(?:公元前?)?\d{1,4}年(?:\d{1,2}月)?(?:\d{1,2}[日号])?|\d{1,2}月\d{1,2}[日号]"
        r"|\d{1,4}年代|\d{1,2}世纪(?:\d{1,2}0年代)?|[一二三四五六七八九十]+世纪"
        r"|[一二三四五六七八九〇零十百千]+年(?:[一二三四五六七八九十]+月)?"
    ),
    "number": re.compile(
        r"(?:约|近|超过|逾)?\d[\d,，]*(?:\.\d+)?(?:万|亿|千|百)?(?:多|余)?"
        r"(?:[%％]|[个名人次种位年岁米吨元座部届倍层条只家所天月]|公里|千米|平方公里|公斤|千克)?"
        r"|[一二三四五六七八九十百千万两]+(?:[个名人次种位年岁座部届倍层条只家所天])"
    ),
}
# Words that open a sentence with a capital without naming anything.
_EN_FUNCTION_WORDS = frozenset(
    "the a an in on at of by for from to with as after before during since while when "
    "however although though this that these those it its he she they his her their there "
    "many some most several other another one both each all such later earlier".split()
)
_ZH_PUNCTUATION = "，。；：！？、（）()「」『』“”‘’《》〈〉,.;:!?\"'"
_ZH_PARTICLES = "是为了的被把在于将"


@dataclass(frozen=True)
class _Span:
    start: int
    end: int

    def distance(self, anchors: list[int]) -> int:
        """Characters from the span to the nearest question word in the sentence."""
        if not anchors:
            return 0
        return min(
            0 if self.start <= a < self.end else min(abs(a - self.start), abs(a - self.end))
            for a in anchors
        )


def is_chinese(text: str) -> bool:
    """Whether ``text`` reads as a Chinese question."""
    return cjk_ratio(text) >= CHINESE_QUESTION_RATIO


def question_type(question: str) -> str | None:
    """``"date"``, ``"number"``, ``"person"`` or ``"place"``, or None when the wording says no kind.

    The question word that comes first decides: "Who was king when ...?" asks for a person.
    """
    found: list[tuple[int, str]] = []
    for kind, pattern in _ZH_TYPES if is_chinese(question) else _EN_TYPES:
        match = pattern.search(question)
        if match:
            found.append((match.start(), kind))
    return min(found)[1] if found else None


def has_typed_candidate(question: str, sentence: str) -> bool:
    """Whether ``sentence`` holds a phrase of the kind ``question`` asks for.

    Only kinds with a pattern count (English: all four; Chinese: dates and
    numbers): a Chinese slot filled by any text says nothing about its kind.
    """
    kind = question_type(question)
    if kind is None:
        return False
    if is_chinese(question):
        return kind in _ZH_CANDIDATES and _typed_zh(question, sentence, kind) is not None
    return _english_phrase(question, sentence, kind) is not None


def answer_phrase(question: str, sentence: str) -> str | None:
    """The part of ``sentence`` that answers ``question``, copied verbatim, or None.

    Args:
        question: The user's question.
        sentence: One source sentence, the reader's best match.

    Returns:
        A phrase of at most :data:`MAX_PHRASE_WORDS` words (English) or
        :data:`MAX_PHRASE_CHARS_ZH` characters (Chinese) that the question
        does not already contain; None when no rule finds one.
    """
    kind = question_type(question)
    if is_chinese(question):
        return _chinese_phrase(question, sentence, kind)
    if kind is None:
        return None
    return _english_phrase(question, sentence, kind)


# --- English ---------------------------------------------------------------------------


def _english_phrase(question: str, sentence: str, kind: str) -> str | None:
    asked = {w.lower() for w in re.findall(r"[\w'’\-]+", question)}
    asked_terms = term_set(question)
    anchors = [
        m.start()
        for m in re.finditer(r"[\w'’\-]+", sentence)
        if m.group().lower() in asked and tokenize(m.group())
    ]
    best: tuple[int, int, str] | None = None
    for span, text in _en_candidates(sentence, kind):
        words = text.split()
        if len(words) > MAX_PHRASE_WORDS:
            continue
        terms = term_set(text)
        if kind in ("person", "place") and terms & asked_terms:
            continue  # a name the question already uses is not its answer
        if terms and terms <= asked_terms:
            continue
        key = (span.distance(anchors), -len(text), text)
        if best is None or key[:2] < best[:2]:
            best = key
    return best[2] if best else None


def _en_candidates(sentence: str, kind: str) -> Iterator[tuple[_Span, str]]:
    for match in _EN_CANDIDATES[kind].finditer(sentence):
        text = match.group().strip(" ,;:'’\"")
        if kind in ("person", "place"):
            words = text.split()
            while words and (words[0].lower() in _EN_FUNCTION_WORDS or _MONTH.match(words[0])):
                words.pop(0)
            text = " ".join(words)
        if text:
            start = sentence.find(text, match.start())
            yield _Span(start, start + len(text)), text


# --- Chinese ---------------------------------------------------------------------------


def _chinese_phrase(question: str, sentence: str, kind: str | None) -> str | None:
    if kind is None:
        # 什么 / 哪些 questions in Chinese mostly want a clause (a description, a list):
        # measured on CMRC 2018, the slot's phrase scores half the whole sentence's F1.
        return None
    question = question.strip().rstrip("？?。！!")
    slot = _slot_phrase(question, sentence)
    if kind in _ZH_CANDIDATES:
        typed = _typed_zh(question, sentence, kind)
        # The slot is trusted when it is of the asked kind; else the nearest typed candidate.
        if slot and _ZH_CANDIDATES[kind].search(slot):
            return slot
        return typed or slot
    return slot


def _typed_zh(question: str, sentence: str, kind: str) -> str | None:
    anchors = [
        m.start() for word in term_set(question) for m in re.finditer(re.escape(word), sentence)
    ]
    best: tuple[int, str] | None = None
    for match in _ZH_CANDIDATES[kind].finditer(sentence):
        text = match.group()
        if text in question:
            continue
        distance = _Span(match.start(), match.end()).distance(anchors)
        if best is None or distance < best[0]:
            best = (distance, text)
    return best[1] if best else None


def _slot_phrase(question: str, sentence: str) -> str | None:
    """The sentence's text standing where the question word stands in the question."""
    match = _ZH_SLOT.search(question)
    if match is None:
        return None
    left, right = question[: match.start()], question[match.end() :]
    left_end = _anchor_end(left, sentence)
    if left_end is not None:
        start = left_end
        end = _right_bound(right, sentence, start)
    else:
        right_start = _anchor_start(right, sentence)
        if right_start is None:
            return None
        end = right_start
        start = end
        while (
            start > 0
            and sentence[start - 1] not in _ZH_PUNCTUATION
            and end - start < MAX_PHRASE_CHARS_ZH
        ):
            start -= 1
    phrase = sentence[start:end].strip().lstrip(_ZH_PARTICLES).strip(_ZH_PUNCTUATION + " ")
    if not phrase or len(phrase) > MAX_PHRASE_CHARS_ZH or phrase in question:
        return None
    return phrase


def _anchor_end(left: str, sentence: str) -> int | None:
    """End in ``sentence`` of the longest piece of ``left``, preferring pieces near its end."""
    for size in range(len(left), MIN_ANCHOR_CHARS - 1, -1):
        for begin in range(len(left) - size, -1, -1):
            found = sentence.find(left[begin : begin + size])
            if found >= 0:
                return found + size
    return None


def _anchor_start(right: str, sentence: str) -> int | None:
    """Start in ``sentence`` of the longest piece of ``right``, preferring pieces near its start."""
    right = right.strip(_ZH_PUNCTUATION)
    for size in range(len(right), MIN_ANCHOR_CHARS - 1, -1):
        for begin in range(len(right) - size + 1):
            found = sentence.find(right[begin : begin + size])
            if found >= 0:
                return found
    return None


def _right_bound(right: str, sentence: str, start: int) -> int:
    """Where the slot that starts at ``start`` ends: the question's next words, or punctuation."""
    stop = start
    while stop < len(sentence) and sentence[stop] not in _ZH_PUNCTUATION:
        stop += 1
    right = right.strip(_ZH_PUNCTUATION)
    for size in range(len(right), MIN_ANCHOR_CHARS - 1, -1):
        found = sentence.find(right[:size], start + 1, stop + size)
        if found > start:
            return found
    return min(stop, start + MAX_PHRASE_CHARS_ZH + 1)
