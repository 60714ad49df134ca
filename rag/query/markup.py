"""The two kinds of markup an answer can carry, each defined once.

Citation markers (``[2]``, ``[1, 3]``, ``【2】``) and chat-template tokens
(``<|im_end|>``, ``</s>``, ``[INST]``) are read, stripped or defused by the
prompt, the answer rules, the citation pages, the stream and the evaluation.
They all use the patterns here, so they agree on what a marker or a token is.
"""

from __future__ import annotations

import re

from rag.text.normalize import is_cjk
from rag.text.sentences import split_sentences

# --- citation markers ------------------------------------------------------------------
# "[2]", "[1, 3]", "[1-3]", "[1][2]" and the full-width 【2】/［2］ some models write for
# Chinese. Group 1 is the marker's body, read by marker_numbers.
CITATION_MARKER = re.compile(
    r"[\[【［]\s*(\d{1,3}(?:\s*(?:[,，、;；]|[-–])\s*\d{1,3})*)\s*[\]】］]"
)
# Markers at the start of a sentence span: "X. [1]" puts them after the full stop.
LEADING_MARKERS = re.compile(rf"\s*(?:{CITATION_MARKER.pattern}\s*)+")
# A marker with the spaces before it, removed together so "Paris [1]." reads "Paris.".
_MARKER_WITH_SPACE = re.compile(rf"[ \t]*{CITATION_MARKER.pattern}")
# A range marker "[a-b]" is expanded only when short; "[1-300]" is not a citation list.
MAX_RANGE = 20


# Final punctuation (and closing quotes/brackets) of a sentence; the marker goes before it
# so that a sentence splitter keeps "[n]" with the sentence it cites.
_FINAL_PUNCTUATION = re.compile(r"[。！？；!?;.…:：]+[”’」』)\]）】\"']*$")


def cite_sentence(sentence: str, number: int) -> str:
    """``sentence`` with the marker ``[number]`` before its final punctuation.

    "Paris is large." -> "Paris is large [1]."; "巴黎很大。" -> "巴黎很大[1]。";
    a sentence without final punctuation gets one ("." or "。").
    """
    sentence = sentence.strip()
    match = _FINAL_PUNCTUATION.search(sentence)
    body, tail = (sentence[: match.start()], match.group()) if match else (sentence, "")
    body = body.rstrip()
    cjk = bool(body) and is_cjk(body[-1])
    if not tail:
        tail = "。" if cjk else "."
    return f"{body}[{number}]{tail}" if cjk else f"{body} [{number}]{tail}"


def marker_numbers(body: str) -> list[int]:
    """The source numbers in a marker's body (``"1, 3"``, ``"2-4"``), in order."""
    numbers: list[int] = []
    for part in re.split(r"\s*[,，、;；]\s*", body.strip()):
        bounds = re.split(r"\s*[-–]\s*", part)
        if len(bounds) == 2 and bounds[0] and bounds[1]:
            low, high = int(bounds[0]), int(bounds[1])
            if low <= high and high - low <= MAX_RANGE:
                numbers.extend(range(low, high + 1))
                continue
            numbers.extend([low, high])
        elif part:
            numbers.extend(int(b) for b in bounds if b)
    return numbers


def cited_numbers(text: str) -> list[int]:
    """Source numbers cited in ``text``, in order of first citation, without duplicates."""
    seen: dict[int, None] = {}
    for match in CITATION_MARKER.finditer(text):
        for number in marker_numbers(match.group(1)):
            seen.setdefault(number, None)
    return list(seen)


def cites(text: str, number: int) -> bool:
    """True when a marker in ``text`` cites source ``number`` (ranges included)."""
    return number in cited_numbers(text)


def strip_citation_markers(text: str) -> str:
    """``text`` without its citation markers and the spaces before them."""
    return _MARKER_WITH_SPACE.sub("", text)


def answer_spans(text: str) -> list[tuple[int, int]]:
    """Sentence spans in which markers after a full stop belong to the sentence before.

    Models write both "X [1]." and "X. [1]"; the sentence splitter would hand
    the second marker to the next sentence.
    """
    spans: list[tuple[int, int]] = []
    for start, end in split_sentences(text):
        match = LEADING_MARKERS.match(text, start)
        if spans and match and start < match.end() <= end:
            spans[-1] = (spans[-1][0], match.end())
            start = match.end()
        if start < end:
            spans.append((start, end))
    return spans


# --- chat-template tokens --------------------------------------------------------------
# A special token of a common chat template: ChatML/Llama-3/Phi-3 "<|name|>", the
# SentencePiece "<s>"/"</s>", Llama-2's "[INST]" and "<<SYS>>". Group "name" holds
# the name inside "<|...|>".
_TOKEN = r"<\|\s*(?P<name>[A-Za-z_]{1,40})\s*\|>|</?s>|\[/?INST\]|<</?SYS>>"
TEMPLATE_TOKEN = re.compile(_TOKEN, re.IGNORECASE)
# What to remove from an answer: a token, with the role a turn opener names after it.
_TEMPLATE_DEBRIS = re.compile(
    r"<\|\s*im_start\s*\|>\s*(?:assistant|user|system)?\s*"
    r"|<\|\s*start_header_id\s*\|>\s*\w*\s*<\|\s*end_header_id\s*\|>\s*"
    rf"|{_TOKEN}",
    re.IGNORECASE,
)
# End of the model's turn, or the start of a turn it invents: the answer stops there.
TURN_END = re.compile(
    r"<\|\s*(?:im_end|endoftext|end_of_text|eot_id|eos|end)\s*\|>|</s>"
    r"|<\|\s*im_start\s*\|>\s*(?:user|system)\b|<\|\s*(?:user|system)\s*\|>|\[INST\]"
    r"|\n\s*(?:#{1,3}\s*)?(?:User|Human|Question|Instruction)\s*:|\n\s*(?:用户|问题)\s*[:：]",
    re.IGNORECASE,
)
# A role or an announcement before the answer ("Answer:", "The answer is:", "答案是：").
_ROLE_PREFIX = re.compile(
    r"^\s*(?:assistant|AI|answer|the\s+answer(?:\s+to\s+(?:this|the)\s+question)?\s+is|答案是?|回答|助手)"
    r"\s*[:：]\s*",
    re.IGNORECASE,
)


def defuse_template_markers(text: str) -> str:
    """Make chat-template tokens in untrusted text inert.

    ``<|im_start|>`` becomes ``(im_start)``; ``<s>``, ``</s>``, ``[INST]`` and
    ``<<SYS>>`` are removed, so text from a question or a document cannot open
    a fake turn when the prompt is rendered and tokenised.
    """
    return TEMPLATE_TOKEN.sub(lambda m: f"({m['name']})" if m["name"] else "", text)


def strip_template_tokens(text: str) -> str:
    """A model's answer without leaked template tokens, invented turns and role prefixes.

    Text after an end-of-turn token or an invented new turn ("<|im_start|>user",
    a line starting "User:") is cut, unless nothing but tokens comes before it.
    """
    for match in TURN_END.finditer(text):
        if _TEMPLATE_DEBRIS.sub("", text[: match.start()]).strip():
            text = text[: match.start()]
            break
    text = TURN_END.sub("", _TEMPLATE_DEBRIS.sub("", text))
    previous = None
    while previous != text:
        previous, text = text, _ROLE_PREFIX.sub("", text)
    return text.strip()
