"""Rules applied to a generated answer before it is returned.

Each rule is a small named class with ``apply(draft) -> draft`` returning a
new :class:`AnswerDraft`. They clean leaked chat-template tokens, collapse the
loops small models fall into, check that citations point to sources that
support the sentence (falling back to an extractive answer when the draft is
not grounded), redact personal data and cap the length.
:func:`build_answer_rules` picks them from settings; :func:`run_answer_rules`
applies them in order.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

from rag.errors import InvalidInput
from rag.query.markup import (
    CITATION_MARKER,
    answer_spans,
    marker_numbers,
    strip_citation_markers,
    strip_template_tokens,
)
from rag.settings import RulesSettings
from rag.text.normalize import nfkc
from rag.text.sentences import split_sentences
from rag.text.terms import CJK_IDEOGRAPHS, term_set
from rag.types import AnswerFlags, Hit

log = logging.getLogger(__name__)

FallbackAnswer = Callable[[Sequence[Hit], str], str]
"""Builds an extractive answer from the sources and the question."""


@dataclass(frozen=True)
class AnswerDraft:
    """An answer on its way out.

    Attributes:
        text: The answer text.
        sources: The sources the prompt showed, cited as ``[1]..[n]`` in order.
        flags: What the rules did so far.
        notes: What the rules did, for logs and debugging.
        question: The question, handed to the extractive fallback.
    """

    text: str
    sources: tuple[Hit, ...] = ()
    flags: AnswerFlags = field(default_factory=AnswerFlags)
    notes: tuple[str, ...] = ()
    question: str = ""


@runtime_checkable
class AnswerRule(Protocol):
    """A post-processing step: returns a new draft."""

    name: str

    def apply(self, draft: AnswerDraft) -> AnswerDraft:
        """The draft after this rule."""
        ...


# --- not found ---------------------------------------------------------------------
# The answer says the sources do not hold the answer (the prompt asks it to).
NOT_FOUND_PATTERN = re.compile(
    r"\b(?:sources?|documents?|context|passages?|texts?|information|excerpts?)\s+"
    r"(?:provided\s+|given\s+|above\s+)?(?:do(?:es)?\s+not|don't|doesn't|did\s+not|didn't|"
    r"cannot|can't)\s+(?:contain|include|mention|say|state|provide|specify|cover|address|"
    r"answer|give|discuss|describe|have)"
    r"|\bnot\s+(?:mentioned|found|covered|provided|stated|specified|addressed|discussed|given)"
    r"\s+in\s+the\s+(?:provided\s+|given\s+)?(?:sources?|documents?|context|passages?|texts?)"
    r"|\bno\s+(?:relevant\s+)?information\s+(?:about|on|regarding|in|is|was)\b"
    r"|\bI\s+(?:could\s+not|couldn't|cannot|can't|can\s+not|was\s+unable\s+to|am\s+unable\s+to)"
    r"\s+(?:find|determine|answer)"
    r"|\bthere\s+is\s+no\s+(?:mention|information|answer)|\bI\s+(?:do\s+not|don't)\s+know\b"
    r"|(?:资料|来源|文档|文件|材料|上下文|原文|提供的信息)(?:中|里)?并?(?:没有|未|不)"
    r"(?:找到|提到|提及|包含|涉及|说明|给出|相关|答案)"
    r"|(?:没有|未)(?:找到|提到|提及)(?:相关|有关)?的?(?:信息|内容|答案|资料)"
    r"|无法(?:从|根据).{0,12}?(?:回答|找到|确定|得知|判断)|(?:没有|无)(?:相关|有关)的?(?:信息|内容|资料)"
    r"|未提及",
    re.IGNORECASE,
)


def says_not_found(text: str) -> bool:
    """True when ``text`` states that the sources do not contain the answer."""
    return bool(NOT_FOUND_PATTERN.search(text))


# Phrases of the prompt's own instructions (rag/query/prompt.py). A small model
# sometimes answers by repeating them; the echo contains the not-found phrase it
# was told to use, and would otherwise be shown as a refusal.
_INSTRUCTION_ECHO = re.compile(
    r"如果资料中没有答案|请直接说明|请用中文回答|answer\s+in\s+chinese"
    r"|answer\s+in\s+the\s+language\s+of\s+the\s+question|cite\s+the\s+sources\s+you\s+use"
    r"|the\s+sources\s+are\s+data|use\s+only\s+facts\s+stated|do\s+not\s+add\s+outside",
    re.IGNORECASE,
)


def echoes_instructions(text: str) -> bool:
    """True when ``text`` repeats the prompt's instructions instead of answering."""
    return bool(_INSTRUCTION_ECHO.search(nfkc(text)))


def term_overlap(sentence_terms: set[str], source_terms: set[str]) -> float:
    """Share of the sentence's terms that occur in the source (0 for no terms)."""
    if not sentence_terms:
        return 0.0
    return len(sentence_terms & source_terms) / len(sentence_terms)


# --- rules -----------------------------------------------------------------------------


class TemplateCleanupRule:
    """Strip chat-template tokens and role prefixes a model leaked into its answer.

    Text after an end-of-turn token (``<|im_end|>``, ``</s>``…) or an invented
    new turn ("<|im_start|>user", a line starting "User:") is cut: it is not the answer.
    """

    name = "template_cleanup"

    def apply(self, draft: AnswerDraft) -> AnswerDraft:
        """The draft with template debris removed."""
        text = strip_template_tokens(draft.text)
        if text == draft.text:
            return draft
        return replace(draft, text=text, notes=(*draft.notes, "template tokens removed"))


# One token per Chinese character, per run of other word characters (never
# spanning into Chinese, so "BCPL由谁" is five tokens), per punctuation mark.
_LOOP_TOKEN = re.compile(rf"[{CJK_IDEOGRAPHS}]|[^\W{CJK_IDEOGRAPHS}]+|[^\w\s]")
# A loop is a unit of up to 40 tokens repeated back to back at least 3 times
# and covering at least 12 tokens: "very very" or "哈哈" is language, the same
# clause for the third time in a row is a small model stuck in a loop.
MAX_LOOP_UNIT_TOKENS = 40
MIN_LOOP_REPEATS = 3
MIN_LOOP_TOKENS = 12


def find_loop(text: str) -> tuple[int, int] | None:
    """Where the first back-to-back repetition loop in ``text`` starts.

    Returns:
        ``(start, end_of_first_unit)`` character offsets, or None. The unit
        must contain a word, so a Markdown rule ``-----`` is not a loop.
    """
    matches = list(_LOOP_TOKEN.finditer(text))
    tokens = [m.group(0).lower() for m in matches]
    count = len(tokens)
    for i in range(count):
        for n in range(1, min(MAX_LOOP_UNIT_TOKENS, (count - i) // MIN_LOOP_REPEATS) + 1):
            if tokens[i + n] != tokens[i]:
                continue
            unit = tokens[i : i + n]
            repeats = 1
            while tokens[i + repeats * n : i + (repeats + 1) * n] == unit:
                repeats += 1
            if (
                repeats >= MIN_LOOP_REPEATS
                and repeats * n >= MIN_LOOP_TOKENS
                and any(t[0].isalnum() for t in unit)
            ):
                return matches[i].start(), matches[i + n - 1].end()
    return None


def _sentence_key(sentence: str) -> str:
    return re.sub(r"[\W_]+", "", strip_citation_markers(nfkc(sentence).lower()))


class RepetitionRule:
    """Drop repeated sentences and cut a runaway loop after its first round.

    A repeated sentence is removed (its first occurrence stays); a phrase
    looping back to back (see :func:`find_loop`) is cut after its first
    occurrence, which sets ``flags.truncated``.
    """

    name = "repetition"

    def apply(self, draft: AnswerDraft) -> AnswerDraft:
        """The draft without repeats."""
        text = draft.text
        seen: set[str] = set()
        kept: list[str] = []
        dropped = 0
        for start, end in split_sentences(text):
            key = _sentence_key(text[start:end])
            if key and key in seen:
                dropped += 1
                continue
            seen.add(key)
            kept.append(text[start:end])
        text = "".join(kept).strip()
        notes = list(draft.notes)
        flags = draft.flags
        if dropped:
            notes.append(f"repetition: dropped {dropped} repeated sentences")
        loop = find_loop(text)
        if loop is not None:
            text = text[: loop[1]].rstrip(" ,;:，、；：")
            flags = replace(flags, truncated=True)
            notes.append(f"repetition: cut a loop starting at character {loop[0]}")
        if text == draft.text:
            return draft
        return replace(draft, text=text, flags=flags, notes=tuple(notes))


class CitationCheckRule:
    """Check that citations point to sources that support the sentence.

    * A marker ``[n]`` with no source ``n`` is removed.
    * A citation is kept only when at least ``min_overlap`` of the sentence's
      content terms (:func:`rag.text.terms.term_set`, so Chinese works) occur
      in the cited chunk.
    * A sentence is supported when it keeps a citation, or cites nothing and
      reaches ``min_overlap`` with some source, unless all its terms are the
      question's (it restates the question). If the answer then cites
      nothing, or fewer than ``min_supported_share`` of its sentences are
      supported, it is replaced by ``fallback(sources, question)`` and
      ``flags.fallback_used`` is set; an answer that says the sources do not
      hold the answer is kept instead and marked ``flags.not_found``.
    """

    name = "citation_check"

    def __init__(
        self,
        fallback: FallbackAnswer,
        min_overlap: float = 0.3,
        min_supported_share: float = 0.5,
    ) -> None:
        """Build the rule.

        Args:
            fallback: Extractive answer builder, ``fallback(sources, question)``.
            min_overlap: Share of a sentence's terms the cited chunk must hold.
            min_supported_share: Share of sentences that must be supported.

        Raises:
            InvalidInput: For a share outside [0, 1].
        """
        for label, value in (
            ("min_citation_overlap", min_overlap),
            ("min_supported_share", min_supported_share),
        ):
            if not 0.0 <= value <= 1.0:
                raise InvalidInput(f"{label} must be between 0 and 1, got {value}")
        self.fallback = fallback
        self.min_overlap = min_overlap
        self.min_supported_share = min_supported_share

    def _use_fallback(self, draft: AnswerDraft, reason: str) -> AnswerDraft:
        text = self.fallback(draft.sources, draft.question).strip()
        if text == draft.text.strip():
            # The draft is the extractive answer already: nothing was replaced.
            return replace(
                draft, text=text, notes=(*draft.notes, f"kept the extractive answer: {reason}")
            )
        flags = replace(draft.flags, fallback_used=True, not_found=says_not_found(text))
        log.info("citation check fell back to extractive answer reason=%s", reason)
        return replace(draft, text=text, flags=flags, notes=(*draft.notes, f"fallback: {reason}"))

    def apply(self, draft: AnswerDraft) -> AnswerDraft:
        """The draft with checked citations, or the fallback answer."""
        text = draft.text
        if not text.strip():
            return self._use_fallback(draft, "empty answer")
        if echoes_instructions(text):
            return self._use_fallback(draft, "answer repeats the instructions")
        source_terms: dict[int, set[str]] = {}

        def terms_of(number: int) -> set[str]:
            if number not in source_terms:
                source_terms[number] = term_set(draft.sources[number - 1].text)
            return source_terms[number]

        pieces: list[str] = []
        removed_invalid: list[int] = []
        removed_unsupported: list[int] = []
        # A sentence made only of the question's own terms ("Normandy." for "In what
        # country is Normandy?") restates the question: it is never supported.
        asked = term_set(draft.question)
        echoes = 0
        kept_any = False
        counted = supported = 0
        for start, end in answer_spans(text):
            sentence = text[start:end]
            plain = strip_citation_markers(sentence)
            terms = term_set(plain)
            markers = list(CITATION_MARKER.finditer(sentence))
            kept_here: list[int] = []
            out: list[str] = []
            position = 0
            for match in markers:
                out.append(sentence[position : match.start()])
                position = match.end()
                keep: list[int] = []
                for number in marker_numbers(match.group(1)):
                    if not 1 <= number <= len(draft.sources):
                        removed_invalid.append(number)
                    elif terms and term_overlap(terms, terms_of(number)) < self.min_overlap:
                        removed_unsupported.append(number)
                    elif number not in keep:
                        keep.append(number)
                if keep:
                    out.append(f"[{', '.join(str(n) for n in keep)}]")
                    kept_here.extend(keep)
                elif out:
                    out[-1] = out[-1].rstrip(" \t")
            out.append(sentence[position:])
            piece = "".join(out)
            echo = bool(terms) and terms <= asked
            pieces.append(piece)
            kept_any = kept_any or bool(kept_here)
            if terms and not says_not_found(plain):
                counted += 1
                if echo:
                    echoes += 1
                elif kept_here or (
                    not markers
                    and any(
                        term_overlap(terms, terms_of(n)) >= self.min_overlap
                        for n in range(1, len(draft.sources) + 1)
                    )
                ):
                    supported += 1

        checked = "".join(pieces).strip()
        notes = list(draft.notes)
        if removed_invalid:
            notes.append(f"citations to no source removed: {sorted(set(removed_invalid))}")
        if removed_unsupported:
            notes.append(f"unsupported citations removed: {sorted(set(removed_unsupported))}")
        if echoes:
            notes.append(f"sentences that only repeat the question: {echoes}")
        if not kept_any:
            if says_not_found(checked):
                flags = replace(draft.flags, not_found=True)
                return replace(draft, text=checked, flags=flags, notes=tuple(notes))
            return self._use_fallback(replace(draft, notes=tuple(notes)), "answer cites no source")
        if counted and supported / counted < self.min_supported_share:
            return self._use_fallback(
                replace(draft, notes=tuple(notes)),
                f"only {supported} of {counted} sentences supported",
            )
        if checked == draft.text:
            return draft
        return replace(draft, text=checked, notes=tuple(notes))


# --- redaction -------------------------------------------------------------------------
_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
)
# Chinese resident identity number (GB 11643-1999): 17 digits and a check
# character, digit or X.
_CN_ID = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"
# Payment card numbers: 13-19 digits, contiguous or in groups of four (Amex 4-6-5).
_CARD = re.compile(
    r"(?<![\d-])(?:\d{13,19}|\d{4}([ -])\d{4}(?:\1\d{4}){1,2}(?:\1\d{1,4})?"
    r"|\d{4}([ -])\d{6}\2\d{4,5})(?![\d-])"
)
_PHONE = re.compile(
    # Chinese mobile, optionally +86/0086, optionally grouped 3-4-4.
    r"(?<![\d+])(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)"
    # International E.164 with a leading +.
    r"|(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?!\d)"
    # North American: (415) 555-2671, 415-555-2671, 415.555.2671, +1 415 555 2671.
    r"|(?<![\w+])(?:1[ .-])?(?:\(\d{3}\)\s?|\d{3}[ .-])\d{3}[ .-]\d{4}(?!\d)"
    # Chinese landline: 010-12345678, (0755)12345678.
    r"|(?<![\d(])(?:\(0\d{2,3}\)\s?|0\d{2,3}-)\d{7,8}(?!\d)"
)
# E.164 numbers have at most 15 digits; fewer than 7 is a code, not a phone.
_MIN_PHONE_DIGITS, _MAX_PHONE_DIGITS = 7, 15


def valid_cn_id(number: str) -> bool:
    """True when an 18-character Chinese ID number has a correct check character."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _CN_ID_WEIGHTS, strict=True))
    return _CN_ID_CHECK[total % 11] == number[17].upper()


def luhn_valid(digits: str) -> bool:
    """True when a digit string passes the Luhn (mod 10) check of card numbers."""
    if not digits.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _word_pattern(word: str) -> re.Pattern[str]:
    escaped = re.escape(word)
    # Latin words match whole words only ("ass" must not hit "class"); Chinese has no spaces.
    left = r"(?<![A-Za-z0-9])" if word[0].isascii() and word[0].isalnum() else ""
    right = r"(?![A-Za-z0-9])" if word[-1].isascii() and word[-1].isalnum() else ""
    return re.compile(f"{left}{escaped}{right}", re.IGNORECASE)


def redact_text(text: str, sensitive_words: Sequence[str] = ()) -> tuple[str, dict[str, int]]:
    """Replace personal data and sensitive words with ``[REDACTED:kind]``.

    Kinds: ``email``, ``id_number`` (Chinese resident ID with a valid check
    character), ``card`` (13-19 digits passing Luhn), ``phone`` and
    ``sensitive`` (the given words, case-insensitive).

    Returns:
        The redacted text and how many of each kind were replaced.
    """
    counts: dict[str, int] = {}

    def substitute(pattern: re.Pattern[str], kind: str, accept: Callable[[str], bool]) -> None:
        nonlocal text

        def replace_match(match: re.Match[str]) -> str:
            if not accept(match.group(0)):
                return match.group(0)
            counts[kind] = counts.get(kind, 0) + 1
            return f"[REDACTED:{kind}]"

        text = pattern.sub(replace_match, text)

    def digits(value: str) -> str:
        return re.sub(r"\D", "", value)

    substitute(_EMAIL, "email", lambda _: True)
    substitute(_CN_ID, "id_number", valid_cn_id)
    substitute(_CARD, "card", lambda s: 13 <= len(digits(s)) <= 19 and luhn_valid(digits(s)))
    substitute(_PHONE, "phone", lambda s: _MIN_PHONE_DIGITS <= len(digits(s)) <= _MAX_PHONE_DIGITS)
    words = sorted({nfkc(w).strip() for w in sensitive_words if w.strip()}, key=len, reverse=True)
    for word in words:
        substitute(_word_pattern(word), "sensitive", lambda _: True)
    return text, counts


class RedactionRule:
    """Redact emails, phone, ID and card numbers and user-listed sensitive words."""

    name = "redaction"

    def __init__(self, sensitive_words: Sequence[str] = ()) -> None:
        """Build the rule with extra words to redact (case-insensitive)."""
        self.sensitive_words = tuple(sensitive_words)

    def apply(self, draft: AnswerDraft) -> AnswerDraft:
        """The draft with personal data replaced; sets ``flags.redacted``."""
        text, counts = redact_text(draft.text, self.sensitive_words)
        if not counts:
            return draft
        summary = " ".join(f"{kind}={n}" for kind, n in sorted(counts.items()))
        return replace(
            draft,
            text=text,
            flags=replace(draft.flags, redacted=True),
            notes=(*draft.notes, f"redacted {summary}"),
        )


class AnswerLengthCapRule:
    """Cut answers longer than ``max_chars``, at a sentence end when one is near.

    A sentence end is used when it keeps at least half the allowed length;
    otherwise the text is cut at a word boundary and ends with "…". Sets
    ``flags.truncated``.
    """

    name = "length_cap"
    # Below half the limit a sentence cut throws away too much; cut mid-sentence instead.
    MIN_KEEP_SHARE = 0.5

    def __init__(self, max_chars: int) -> None:
        """Build the rule.

        Raises:
            InvalidInput: If ``max_chars`` is below 2.
        """
        if max_chars < 2:
            raise InvalidInput(f"max_answer_chars must be at least 2, got {max_chars}")
        self.max_chars = max_chars

    def apply(self, draft: AnswerDraft) -> AnswerDraft:
        """The draft, cut to ``max_chars`` when longer."""
        text = draft.text
        if len(text) <= self.max_chars:
            return draft
        cut = 0
        for _start, end in split_sentences(text):
            if len(text[:end].rstrip()) > self.max_chars:
                break
            cut = end
        if cut >= self.max_chars * self.MIN_KEEP_SHARE:
            short = text[:cut].rstrip()
        else:
            head = text[: self.max_chars - 1]
            space = head.rfind(" ")
            if space >= self.max_chars * self.MIN_KEEP_SHARE:
                head = head[:space]
            head = re.sub(r"[\[【［][^\]】］]*$", "", head)  # no half citation marker
            short = head.rstrip() + "…"
        return replace(
            draft,
            text=short,
            flags=replace(draft.flags, truncated=True),
            notes=(*draft.notes, f"answer cut from {len(text)} to {len(short)} characters"),
        )


# The brief calls the answer cap "LengthCapRule"; that name is taken by the
# question rule in rules_pre, so both names are offered here.
LengthCapRule = AnswerLengthCapRule


def build_answer_rules(rules: RulesSettings, fallback: FallbackAnswer) -> list[AnswerRule]:
    """The post-processing rules the settings switch on, in the order they run.

    Template cleanup and the length cap always run; repetition, citation check
    and redaction follow their switches. Redaction runs after the citation
    check so a fallback answer is redacted too.
    """
    chosen: list[AnswerRule] = [TemplateCleanupRule()]
    if rules.repetition:
        chosen.append(RepetitionRule())
    if rules.citation_check:
        chosen.append(CitationCheckRule(fallback, min_overlap=rules.min_citation_overlap))
    if rules.redact:
        chosen.append(RedactionRule(rules.sensitive_words))
    chosen.append(AnswerLengthCapRule(rules.max_answer_chars))
    return chosen


def run_answer_rules(
    rules_list: Sequence[AnswerRule],
    text: str,
    sources: Sequence[Hit],
    question: str = "",
    flags: AnswerFlags | None = None,
) -> AnswerDraft:
    """Apply the rules in order to a generated answer.

    Args:
        rules_list: From :func:`build_answer_rules`.
        text: The generator's answer.
        sources: The sources the prompt numbered 1..n (``PromptPlan.used_sources``).
        question: The question (for the extractive fallback).
        flags: Flags set earlier (e.g. ``injection_detected``).

    Returns:
        The final draft.
    """
    draft = AnswerDraft(
        text=text, sources=tuple(sources), flags=flags or AnswerFlags(), question=question
    )
    for rule in rules_list:
        draft = rule.apply(draft)
    log.debug("answer rules applied rules=%d notes=%s", len(rules_list), "; ".join(draft.notes))
    return draft
