"""Rules applied to a question before retrieval.

Each rule is a small named class with ``apply(state) -> state`` that returns a
new :class:`QueryState` (never mutates it) or raises
:class:`~rag.errors.QueryRejected` with a message saying what to change.
:func:`build_query_rules` picks the rules from settings and
:func:`run_query_rules` applies them in order.

:func:`screen_text_for_injection` is also used on retrieved chunks, so that a
document carrying instructions is shown to the generator as quoted data.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

from rag.errors import InvalidInput, QueryRejected
from rag.query.injection import screen_revealed
from rag.settings import RulesSettings
from rag.text.normalize import normalize_text
from rag.text.terms import tokenize
from rag.types import ChatTurn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueryState:
    """A question on its way to retrieval.

    Attributes:
        question: The question the generator answers (normalised, never rewritten).
        retrieval_query: What the retrievers search for (the question, possibly
            extended with terms of earlier turns).
        keywords: Content terms of the question, in order, without duplicates.
        history: Earlier turns of the conversation, oldest first.
        injection_detected: The question looks like a prompt injection and is
            to be treated as data.
        notes: What the rules did, for logs and debugging.
    """

    question: str
    retrieval_query: str
    keywords: tuple[str, ...] = ()
    history: tuple[ChatTurn, ...] = ()
    injection_detected: bool = False
    notes: tuple[str, ...] = ()


@runtime_checkable
class QueryRule(Protocol):
    """A pre-processing step: returns a new state or raises ``QueryRejected``."""

    name: str

    def apply(self, state: QueryState) -> QueryState:
        """The state after this rule.

        Raises:
            QueryRejected: When the question cannot be answered as asked.
        """
        ...


# --- injection patterns ----------------------------------------------------------------
# Phrases that try to override the system prompt or change the model's role, and
# chat-template markers that try to open a fake system or assistant turn. They are
# deliberately specific (e.g. "act as" only when addressed to the model), because a
# knowledge base holds text such as "the protein acts as a catalyst" or
# "该蛋白在代谢中扮演重要角色" that must not be flagged.
_QUALIFIERS = r"(?:(?:all|any|every|of|the|your|my|these|those|its)\s+)*"
_EARLIER = r"(?:previous|prior|above|earlier|preceding|foregoing|former|original|initial|system)"
_ORDERS = (
    r"(?:instructions?|prompts?|rules?|guidelines?|directions?|directives?|commands?|"
    r"context|messages?|constraints?)"
)
_ZH_EARLIER = r"(?:之前|以上|前面|上述|上面|先前|此前|原来|原有|原先|所有|全部|一切)"
_ZH_ORDERS = r"(?:指令|提示词?|指示|规则|要求|设定|命令|约束|限制)"

INJECTION_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.IGNORECASE))
    for name, pattern in (
        (
            "ignore_instructions",
            rf"\b(?:ignore|override|bypass|skip|forget)\s+{_QUALIFIERS}{_EARLIER}\s+"
            rf"(?:{_QUALIFIERS})?{_ORDERS}\b",
        ),
        (
            "disregard_instructions",
            rf"\bdisregard\s+{_QUALIFIERS}(?:{_EARLIER}\s+)?(?:{_ORDERS}|everything)\b",
        ),
        (
            "forget_everything",
            r"\bforget\s+(?:everything|all(?:\s+of)?)\s+(?:(?:that\s+)?you(?:'ve|'re|\s+have|"
            r"\s+were|\s+know|\s+learned)|(?:the\s+|your\s+)?(?:previous|prior|above|earlier|"
            r"instructions|rules|training))",
        ),
        ("you_are_now", r"\byou(?:\s+are|'re)\s+now\b|\bfrom\s+now\s+on,?\s+you\s+(?:are|will)\b"),
        (
            "role_play",
            r"(?:\byou\s+(?:will\s+|must\s+|should\s+|shall\s+|to\s+|now\s+)?|^\s*|[.!?:;]\s*|"
            r"\bplease\s+|\bnow\s+)(?:act|behave|respond)\s+as\b"
            r"|\bpretend\s+(?:to\s+be|(?:that\s+)?you(?:'re|\s+are))"
            r"|\brole-?\s?play\s+as\b",
        ),
        ("system_prompt", r"\bsystem\s+prompt\b"),
        (
            "reveal_instructions",
            r"\b(?:reveal|show|print|repeat|output|display|leak|tell\s+me)\s+(?:me\s+)?"
            r"(?:all\s+)?(?:of\s+)?(?:your\s+(?:(?:system|initial|original|hidden|secret|full|"
            r"exact)\s+)*|the\s+(?:(?:system|initial|original|hidden|secret)\s+)+)"
            r"(?:instructions|prompt|rules|guidelines|directives)\b",
        ),
        (
            "developer_mode",
            r"\bdeveloper\s+mode\s+(?:enabled|output|activated|response)\b"
            r"|\b(?:you|assistant|model|chatgpt)\s+(?:are|is)\s+(?:now\s+)?in\s+developer\s+mode\b",
        ),
        (
            "jailbreak",
            r"\bjailbr(?:eak(?:ing|ed)?|oken)\b|\bdo\s+anything\s+now\b|\bDAN\s+(?:mode|prompt)\b"
            r"|\b(?:bypass|ignore|without)\s+(?:any\s+|all\s+|your\s+)*(?:safety|content)\s+"
            r"(?:filters?|polic(?:y|ies)|guidelines|restrictions)\b",
        ),
        (
            "chat_template_marker",
            r"<\|\s*(?:im_start|im_end|system|user|assistant|endoftext|end|eot_id|"
            r"start_header_id|end_header_id|begin_of_text)\s*\|>"
            r"|\[/?INST\]|<</?SYS>>|#{2,}\s*(?:system|instructions?|new\s+instructions)\s*:",
        ),
        (
            "zh_ignore_instructions",
            rf"(?:忽略|无视|忽视|不要理会|别管|跳过|忘记|忘掉)掉?你?{_ZH_EARLIER}的?"
            rf"(?:所有|全部|一切)?的?{_ZH_ORDERS}",
        ),
        (
            "zh_forget_everything",
            r"忘(?:记|掉)(?:你)?(?:之前|以上|前面|上述)?的?(?:所有|一切|全部)",
        ),
        (
            "zh_you_are_now",
            r"你现在是|你现在(?:扮演|作为|成为)|从现在(?:开始|起)[，,]?\s*你(?:是|将|要|就是|必须)",
        ),
        (
            "zh_role_play",
            r"(?:请|你|现在|假装|假设)\s*你?(?:来|要|将|必须)?扮演|角色扮演|假装(?:你是|自己是|成)",
        ),
        (
            "zh_system_prompt",
            r"系统提示(?:词|语)|系统指令|系统提示(?!(?:错误|信息|框|音|消息|窗口|界面))",
        ),
        (
            "zh_reveal_instructions",
            r"(?:泄露|透露|告诉我|输出|显示|重复|打印)(?:一下)?你的(?:指令|提示词|规则|设定|初始指令)",
        ),
        ("zh_disobey", r"不(?:要|必|用|需要)再?(?:遵守|遵循|服从|理会|听从)"),
        ("zh_jailbreak", r"越狱|开发者模式|无限制模式|DAN模式"),
    )
)


# Words (ASCII, matched whole) or substrings (anything else) of which a text must
# contain at least one before a pattern is run. Screening every retrieved chunk
# with all patterns costs about 1 ms per 1,500 characters; almost every chunk is
# clean, and a set lookup rules most patterns out at once.
_ANCHORS: dict[str, tuple[str, ...]] = {
    "ignore_instructions": ("ignore", "override", "bypass", "skip", "forget"),
    "disregard_instructions": ("disregard",),
    "forget_everything": ("forget",),
    "you_are_now": ("you",),
    "role_play": ("act", "behave", "respond", "pretend", "role", "roleplay"),
    "system_prompt": ("prompt",),
    "reveal_instructions": ("instructions", "prompt", "rules", "guidelines", "directives"),
    "developer_mode": ("developer",),
    "jailbreak": (
        "jailbreak",
        "jailbreaking",
        "jailbreaked",
        "jailbroken",
        "anything",
        "dan",
        "safety",
        "content",
    ),
    "chat_template_marker": ("<|", "[inst]", "[/inst]", "<<sys>>", "<</sys>>", "##"),
    "zh_ignore_instructions": ("忽略", "无视", "忽视", "不要理会", "别管", "跳过", "忘记", "忘掉"),
    "zh_forget_everything": ("忘记", "忘掉"),
    "zh_you_are_now": ("你现在", "从现在"),
    "zh_role_play": ("扮演", "假装"),
    "zh_system_prompt": ("系统",),
    "zh_reveal_instructions": ("你的",),
    "zh_disobey": ("遵守", "遵循", "服从", "理会", "听从"),
    "zh_jailbreak": ("越狱", "开发者模式", "无限制模式", "dan模式"),
}
_ASCII_WORD = re.compile(r"[a-z]+")


def screen_text_for_injection(text: str) -> list[str]:
    """Names of the injection patterns ``text`` matches, in pattern order.

    Used on questions and on retrieved chunks; an empty list means clean.
    Disguised (encoded, spaced, look-alike) and planted instructions are
    revealed and matched by :func:`rag.query.injection.screen_revealed`.
    """
    if not text:
        return []
    return screen_revealed(text, screen_phrases_for_injection)


def screen_phrases_for_injection(text: str) -> list[str]:
    """Names of the phrase patterns above that ``text`` matches as written."""
    if not text:
        return []
    lowered = text.lower()
    words = set(_ASCII_WORD.findall(lowered))

    def anchored(name: str) -> bool:
        return any(
            (a in words) if a.isascii() and a.isalpha() else (a in lowered) for a in _ANCHORS[name]
        )

    return [name for name, pattern in INJECTION_PATTERNS if anchored(name) and pattern.search(text)]


# --- rules -----------------------------------------------------------------------------


def _reject_if_empty(text: str) -> None:
    if not text.strip():
        raise QueryRejected("question is empty: type a question")


class NormalizeRule:
    """NFKC-normalise, trim and collapse whitespace; refuse an empty question."""

    name = "normalize"

    def apply(self, state: QueryState) -> QueryState:
        """The normalised state.

        Raises:
            QueryRejected: If nothing but whitespace is left.
        """
        question = normalize_text(state.question)
        _reject_if_empty(question)
        retrieval_query = (
            question
            if state.retrieval_query == state.question
            else normalize_text(state.retrieval_query)
        )
        return replace(state, question=question, retrieval_query=retrieval_query)


class LengthCapRule:
    """Refuse questions longer than ``max_chars`` characters."""

    name = "length_cap"

    def __init__(self, max_chars: int) -> None:
        """Build the rule.

        Raises:
            InvalidInput: If ``max_chars`` is below 1.
        """
        if max_chars < 1:
            raise InvalidInput(f"max_question_chars must be at least 1, got {max_chars}")
        self.max_chars = max_chars

    def apply(self, state: QueryState) -> QueryState:
        """The state, unchanged.

        Raises:
            QueryRejected: If the question is too long.
        """
        length = len(state.question)
        if length > self.max_chars:
            raise QueryRejected(
                f"question is too long: {length} characters, the limit is {self.max_chars}; "
                "shorten it or ask several questions",
                details={"limit": self.max_chars, "length": length},
            )
        return state


class InjectionScreenRule:
    """Detect prompt-injection phrasing; refuse it, or mark it to be quoted as data."""

    name = "injection_screen"

    def __init__(self, action: str = "quote") -> None:
        """Build the rule.

        Args:
            action: ``"refuse"`` raises ``QueryRejected``; ``"quote"`` sets
                ``injection_detected`` and lets the question through as data.

        Raises:
            InvalidInput: For another action.
        """
        if action not in ("refuse", "quote"):
            raise InvalidInput(f"injection_action must be 'refuse' or 'quote', got {action!r}")
        self.action = action

    def apply(self, state: QueryState) -> QueryState:
        """The state, flagged when a pattern matches.

        Raises:
            QueryRejected: With action ``"refuse"`` and a match.
        """
        matched = screen_text_for_injection(state.question)
        if not matched:
            return state
        log.info("injection patterns=%s action=%s", ",".join(matched), self.action)
        if self.action == "refuse":
            raise QueryRejected(
                "question looks like a prompt injection (it tries to change the assistant's "
                f"instructions: {', '.join(matched)}); ask about the documents instead",
                details={"patterns": matched},
            )
        return replace(
            state,
            injection_detected=True,
            notes=(*state.notes, f"injection patterns quoted as data: {', '.join(matched)}"),
        )


def _dedupe(terms: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(terms))


def _drop_contained(terms: Sequence[str]) -> list[str]:
    """Drop terms contained in a longer term of the list.

    jieba's search mode emits overlapping pieces ("糖尿", "糖尿病"); keeping only
    the longest avoids counting or repeating one word several times.
    """
    return [t for t in terms if not any(t != other and t in other for other in terms)]


def question_terms(text: str) -> list[str]:
    """Distinct content terms of ``text``, unstemmed, stop words removed.

    Unstemmed so they read as words (``"diabetes"``, not ``"diabet"``) when
    shown or appended to a retrieval query; the BM25 index stems them again.
    """
    return _dedupe(tokenize(text, stem=False))


class KeywordRule:
    """Set ``keywords`` to the question's content terms (BM25 tokeniser, no stop words)."""

    name = "keywords"

    def apply(self, state: QueryState) -> QueryState:
        """The state with ``keywords`` filled."""
        return replace(state, keywords=tuple(question_terms(state.question)))


# Words that point back to an earlier turn. Chinese: 其 not in 其他/其中/其实/尤其/
# 极其 (other, among, actually, especially, extremely); 该 not in 应该 (should).
_REFERS_BACK_EN = re.compile(
    r"\b(?:it|its|it's|they|them|their|theirs|this|that|those|these|he|she|him|her|his|"
    r"the\s+same|the\s+former|the\s+latter|the\s+above|aforementioned)\b"
    r"|^\s*(?:what|how)\s+about\b|^\s*and\s+(?:the|what|how|for|in|if)\b",
    re.IGNORECASE,
)
_REFERS_BACK_ZH = re.compile(
    r"它们?|(?<![尤极与])其(?![他它中次实余])|这个|那个|这些|那些|(?<!应)该|那.{0,20}?呢|还有|上述|前者|后者"
)
_POINTER_TERMS = frozenset("它 它们 这些 那些 这个 那个 该 其 还有 前者 后者 上述".split())


class FollowUpRewriteRule:
    """Extend the retrieval query of a follow-up question with earlier key terms.

    A question is a follow-up when there is a previous user turn and the
    question is short (fewer than ``short_question_terms`` content terms) or
    refers back (it/they/that/"what about", 它/这些/那…呢/还有…). Its
    retrieval query becomes the question plus up to ``max_terms`` content terms
    of the previous user turns, most recent first, without duplicates. The
    question the generator answers is left unchanged.
    """

    name = "followup_rewrite"

    def __init__(
        self, max_terms: int = 8, short_question_terms: int = 4, max_turns: int = 3
    ) -> None:
        """Build the rule.

        Args:
            max_terms: Most terms appended to the retrieval query.
            short_question_terms: A question with fewer content terms is a
                follow-up. Four: a question naming its own subject usually has
                at least four ("side effects of metformin in children"), while
                "what about the dose?" has one or two. Counting, not parsing,
                keeps the decision predictable.
            max_turns: How many earlier user turns to take terms from.

        Raises:
            InvalidInput: For a bound below 1 (0 for ``short_question_terms``).
        """
        if max_terms < 1:
            raise InvalidInput(f"max_terms must be at least 1, got {max_terms}")
        if short_question_terms < 0:
            raise InvalidInput(
                f"short_question_terms must be at least 0, got {short_question_terms}"
            )
        if max_turns < 1:
            raise InvalidInput(f"max_turns must be at least 1, got {max_turns}")
        self.max_terms = max_terms
        self.short_question_terms = short_question_terms
        self.max_turns = max_turns

    def is_follow_up(self, question: str) -> bool:
        """True when ``question`` is short or refers back to an earlier turn."""
        if _REFERS_BACK_EN.search(question) or _REFERS_BACK_ZH.search(question):
            return True
        content = [t for t in _drop_contained(question_terms(question)) if t not in _POINTER_TERMS]
        return len(content) < self.short_question_terms

    def apply(self, state: QueryState) -> QueryState:
        """The state with an extended ``retrieval_query`` for a follow-up."""
        previous = [t.content for t in reversed(state.history) if t.role == "user"]
        previous = [p for p in previous if p.strip() and p.strip() != state.question.strip()]
        if not previous or not self.is_follow_up(state.question):
            return state
        own = set(question_terms(state.question))
        added: list[str] = []
        for turn in previous[: self.max_turns]:
            for term in _drop_contained(question_terms(turn)):
                if term in own or term in added or term in _POINTER_TERMS:
                    continue
                added.append(term)
                if len(added) == self.max_terms:
                    break
            if len(added) == self.max_terms:
                break
        if not added:
            return state
        return replace(
            state,
            retrieval_query=f"{state.retrieval_query} {' '.join(added)}",
            notes=(*state.notes, f"follow-up: added terms {' '.join(added)}"),
        )


def build_query_rules(rules: RulesSettings) -> list[QueryRule]:
    """The pre-processing rules the settings switch on, in the order they run."""
    chosen: list[QueryRule] = []
    if rules.normalize:
        chosen.append(NormalizeRule())
    chosen.append(LengthCapRule(rules.max_question_chars))
    if rules.injection_screen:
        chosen.append(InjectionScreenRule(rules.injection_action))
    chosen.append(KeywordRule())
    if rules.rewrite_followups:
        chosen.append(FollowUpRewriteRule())
    return chosen


def run_query_rules(
    rules_list: Sequence[QueryRule],
    question: str,
    history: Sequence[ChatTurn] = (),
) -> QueryState:
    """Apply the rules in order to a question.

    Args:
        rules_list: From :func:`build_query_rules`.
        question: The user's question as typed.
        history: Earlier turns, oldest first.

    Returns:
        The final state.

    Raises:
        QueryRejected: If the question is empty or a rule refuses it.
    """
    _reject_if_empty(question)
    state = QueryState(question=question, retrieval_query=question, history=tuple(history))
    for rule in rules_list:
        state = rule.apply(state)
    log.debug("query rules applied rules=%d notes=%s", len(rules_list), "; ".join(state.notes))
    return state
