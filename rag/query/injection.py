"""Prompt-injection screening beyond plain phrasing: hidden encodings, planted notes, canaries.

:func:`rag.query.rules_pre.screen_text_for_injection` matches instructions
written out in plain English or Chinese. Attackers also write them so that a
phrase list cannot see them (Base64, hex, ROT13, reversed, leetspeak, letters
spaced out, zero-width characters, look-alike Cyrillic letters), or plant
them in documents addressed to "the AI". This module reveals such text and
matches the planted-note phrasing; the screen runs its patterns over what is
revealed through :func:`screen_revealed`.

:func:`canary_leaked` tells whether an answer gives away a canary string
planted in the system prompt, however it was spaced, cased or encoded.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import unquote

_ASCII_WORD = re.compile(r"[a-z]+")

# --- revealing hidden text ------------------------------------------------------------
# Zero-width and bidirectional-control characters: invisible, they split a
# phrase so a pattern no longer matches it while a model still reads it.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]"
)
# Cyrillic and Greek letters drawn like Latin ones, used to disguise English words.
_LOOKALIKES = str.maketrans(
    {
        "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i",
        "ј": "j", "ѕ": "s", "ԁ": "d", "ɡ": "g", "һ": "h", "ӏ": "l", "А": "A", "В": "B",
        "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T",
        "Х": "X", "α": "a", "ε": "e", "ι": "i", "ο": "o", "ρ": "p", "τ": "t", "υ": "u",
        "ν": "v", "Ι": "I", "Ο": "O",
    }
)  # fmt: skip
_MIXED_SCRIPT_WORD = re.compile(
    r"\b(?=\w*[A-Za-z])(?=\w*[\u0370-\u03ff\u0400-\u04ff\u0500-\u052f\u0250-\u02af])\w+\b"
)
# Digits and signs read as letters in leetspeak ("1gn0r3" is "ignore").
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
)
_LEET_TOKEN = re.compile(r"[A-Za-z0-9@$]{3,}")
# Four or more single letters in a row, each followed by one separator:
# "i g n o r e" or "i.g.n.o.r.e"; a wider gap separates words.
_SPACED_LETTERS = re.compile(
    r"(?:\b[A-Za-z][ .\-_*]){3,}[A-Za-z]\b(?:\s{2,}(?:[A-Za-z][ .\-_*]){1,}[A-Za-z]\b)*"
)
_SPACED_CJK = re.compile(r"(?:[\u3400-\u9fff\uff0c\u3002][ \t]){3,}[\u3400-\u9fff\uff0c\u3002]")
# Base64 runs long enough to hold an instruction (16 characters = 12 bytes);
# a maximal run of the alphabet is taken whole (lookarounds would cost a
# backtrack at every position of every chunk).
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")
_HEX_RUN = re.compile(r"[0-9A-Fa-f]{16,}")
_ESCAPED_HEX = re.compile(r"(?:\\x[0-9A-Fa-f]{2}){8,}")
_URL_ESCAPES = re.compile(r"(?:%[0-9A-Fa-f]{2}){6,}")
# Cheap first tests: most chunks hold none of these, and the full patterns are slower.
_NON_LATIN_LOOKALIKE = re.compile("[\u0250-\u02af\u0370-\u03ff\u0400-\u052f]")
# A digit standing for a letter between two lowercase letters ("1gn0re", "pr3vious");
# gene and product names (S100A9, CD33) are upper case.
_DIGIT_IN_WORD = re.compile(r"[a-z][0134579@$][a-z]")
_SPACED_START = re.compile(r"\b[A-Za-z][ .\-_*][A-Za-z][ .\-_*][A-Za-z]\b")
# One scan for the three kinds of rare character (invisible, look-alike, fullwidth).
_RARE_CHARACTER = re.compile(
    "[\u00ad\u034f\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f"
    "\ufeff\u0250-\u02af\u0370-\u03ff\u0400-\u052f\uff21-\uff3a\uff41-\uff5a"
    "\u24b6-\u24e9\U0001d400-\U0001d7ff]"
)
_DISGUISABLE_LETTERS = re.compile(
    "[\uff21-\uff3a\uff41-\uff5a\u24b6-\u24e9\U0001d400-\U0001d7ff]"
)  # fullwidth, circled and mathematical letters, which NFKC turns into ASCII
# A reading by leetspeak, look-alike letters, ROT13 or reversal is kept only if
# it spells one of these words: gene names (S100A9), Greek letters in terms
# (TGF-β) and "reverse transcription" are common and spell none of them.
OVERRIDE_WORDS = frozenset(
    "ignore disregard forget override bypass previous prior above instructions instruction "
    "prompt system reveal print rules jailbreak secret confidential developer pretend".split()
)
# Words that announce a decoding the reader is asked to do.
_ROT13_HINTS = ("rot13", "rot-13", "rot 13", "caesar", "凯撒", "移位")
_REVERSED_HINTS = (
    "backward",
    "reverse",
    "right to left",
    "倒着",
    "倒序",
    "倒过来",
    "反着",
    "反过来",
)


def _printable_share(text: str) -> float:
    if not text:
        return 0.0
    printable = sum(1 for ch in text if ch.isprintable() or ch in "\n\t")
    return printable / len(text)


def _decoded_text(data: bytes) -> str | None:
    """The bytes as UTF-8 text when they read as text (decoded payloads are often binary)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    letters = sum(1 for ch in text if ch.isalpha())
    if _printable_share(text) < 0.95 or letters < max(4, len(text) // 3):
        return None
    return text


def _encoded_payloads(text: str) -> Iterator[tuple[str, str]]:
    """(kind, text) of Base64 and hex runs that decode to text."""
    for match in _BASE64_RUN.finditer(text):
        run = match.group(0).rstrip("=")
        if run.isalpha() or run.isdigit():  # a long word or number, not an encoding
            continue
        if _HEX_RUN.fullmatch(run):
            decoded = _decoded_text(bytes.fromhex(run[: len(run) // 2 * 2]))
            if decoded:
                yield "hex", decoded
            continue
        try:
            data = base64.b64decode(run + "=" * (-len(run) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        decoded = _decoded_text(data)
        if decoded:
            yield "base64", decoded
    if "\\x" in text:
        for match in _ESCAPED_HEX.finditer(text):
            decoded = _decoded_text(bytes.fromhex(match.group(0).replace("\\x", "")))
            if decoded:
                yield "hex", decoded


# Spaced letters often come without wider gaps between words ("i g n o r e p r e v i o u s"),
# and whitespace may have been collapsed: the joined letters are then split at
# the words of an override, so the phrase patterns can read them.
_RUN_TOGETHER = re.compile(
    r"(ignore|disregard|forget|override|bypass|skip)(?:all|the|any|every|of|your|my|these|those)*"
    r"(previous|prior|above|earlier|preceding|system|original|initial)"
    r"(instructions?|prompts?|rules?|guidelines?|directions?|commands?)"
    r"|(system)(prompt)|(developer)(mode)|(reveal|print|show|repeat)(?:your|the)(instructions|prompt)",
    re.IGNORECASE,
)


def _unspaced(match: re.Match[str]) -> str:
    words = [re.sub(r"[ .\-_*]", "", word) for word in re.split(r"\s{2,}", match.group(0))]
    return " ".join(
        _RUN_TOGETHER.sub(lambda m: " " + " ".join(g for g in m.groups() if g) + " ", word)
        for word in words
    )


def revealed_variants(text: str) -> list[tuple[str, str]]:
    """Readings of ``text`` that undo common disguises, as (disguise, revealed text).

    Each reading is computed only when its disguise is present, so clean text
    (almost every retrieved chunk) costs a few regex scans. Returns nothing
    when no disguise is found.
    """
    found: list[tuple[str, str]] = []
    rare = _RARE_CHARACTER.search(text) is not None
    nfkc = (
        unicodedata.normalize("NFKC", text) if rare and _DISGUISABLE_LETTERS.search(text) else text
    )
    if nfkc != text:
        found.append(("fullwidth", nfkc))
    visible = _INVISIBLE.sub("", nfkc) if rare else nfkc
    if visible != nfkc:
        found.append(("invisible", visible))
    if rare and _NON_LATIN_LOOKALIKE.search(visible):
        words = [m.group(0) for m in _MIXED_SCRIPT_WORD.finditer(visible)]
        if _spells_override(w.translate(_LOOKALIKES) for w in words):
            found.append(("lookalike", _MIXED_SCRIPT_WORD.sub(_latin, visible)))
    if _DIGIT_IN_WORD.search(visible):
        words = [w for w in _LEET_TOKEN.findall(visible) if not w.isalpha() and not w.isdigit()]
        if _spells_override(w.translate(_LEET) for w in words):
            found.append(("leetspeak", _LEET_TOKEN.sub(_unleet, visible)))
    if _SPACED_START.search(visible):
        found.append(("spaced", _SPACED_LETTERS.sub(_unspaced, visible)))
    if _SPACED_CJK.search(visible):
        found.append(("spaced", _SPACED_CJK.sub(_unspaced_cjk, visible)))
    found.extend(_encoded_payloads(visible))
    if "%" in visible and _URL_ESCAPES.search(visible):
        found.append(("url_escapes", unquote(visible)))
    lowered = visible.lower()
    if any(hint in lowered for hint in _ROT13_HINTS):
        rot13 = codecs.encode(visible, "rot13")
        if _spells_override(_ASCII_WORD.findall(rot13.lower())):
            found.append(("rot13", rot13))
    if any(hint in lowered for hint in _REVERSED_HINTS):
        backwards = visible[::-1]
        if _spells_override(_ASCII_WORD.findall(backwards.lower())):
            found.append(("reversed", backwards))
    return found


def _spells_override(words: Iterable[str]) -> bool:
    return any(word.lower() in OVERRIDE_WORDS for word in words)


def _unleet(match: re.Match[str]) -> str:
    word = match.group(0)
    return word if word.isalpha() or word.isdigit() else word.translate(_LEET)


def _latin(match: re.Match[str]) -> str:
    return match.group(0).translate(_LOOKALIKES)


def _unspaced_cjk(match: re.Match[str]) -> str:
    return re.sub(r"[ \t]", "", match.group(0))


# --- planted notes ----------------------------------------------------------------------
# Text that addresses the AI reading it, or asks for what only the prompt holds.
# Kept specific: a policy document may well say "the system prompts travellers"
# or "the desk acts as approver", and a manual "respond only with JSON".
_AI = r"(?:ai|a\.i\.|assistant|chatbot|chat\s?bot|bot|llm|language\s+model|model|gpt|chatgpt)"
PLANTED_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.IGNORECASE))
    for name, pattern in (
        (
            "note_to_ai",
            rf"\b(?:note|message|instructions?|attention|reminder|memo)\s+(?:to|for)\s+(?:the\s+|any\s+|all\s+)?{_AI}s?\b",
        ),
        (
            "addressed_to_ai",
            rf"\b{_AI}s?(?:\s+assistants?)?\s*[:,]\s*"
            r"(?:you\s+(?:must|should|will|are)|please|always|never|ignore|reply|respond|"
            r"print|output|repeat|append|reveal|do\s+not)\b",
        ),
        (
            "if_you_are_ai",
            rf"\b(?:if|when|since)\s+you\s+(?:are|'re)\s+(?:an?\s+)?{_AI}\b",
        ),
        (
            "repeat_above",
            r"\brepeat\s+(?:everything|all|the\s+(?:text|words|lines|content|message)s?)\s+"
            r"(?:above|before|preceding|so\s+far)|\brepeat\s+the\s+text\s+above\b",
        ),
        (
            "secret_request",
            r"\b(?:print|reveal|output|show|tell\s+me|give\s+me|send|repeat|append|include|leak|"
            r"disclose|replac\w*)\b[^.\n]{0,60}\b(?:secret|confidential|hidden|canary)\s+"
            r"(?:marker|token|string|code|key|word|phrase|instructions?|rules|prompt)s?\b",
        ),
        (
            "translate_instructions",
            r"\btranslate\s+(?:your|the\s+(?:system|initial|original|hidden))\s+"
            r"(?:instructions|prompt|rules|message)\b",
        ),
        (
            "first_message",
            r"\b(?:initial|original|first|hidden)\s+(?:prompt|instructions|system\s+message)\s+"
            r"you\s+(?:received|were\s+given|got)\b|\bwhat\s+(?:were|are)\s+you\s+(?:told|instructed)\b",
        ),
        (
            "markdown_exfiltration",
            r"!\[[^\]]{0,40}\]\(\s*https?://[^)\s]*[?&][^)\s]*=",
        ),
        (
            "zh_addressed_to_ai",
            r"(?:致|给|写给|告诉)(?:所有|任何)?(?:AI|人工智能|大模型|模型|机器人|智能助手|助手)"
            r"|(?:AI|人工智能|大模型|智能助手|AI助手|人工智能助手)(?:助手)?\s*[:：，,]\s*"
            r"(?:你|请|忽略|只|必须|在回答|先|不要|输出|打印|重复)",
        ),
        (
            "zh_if_you_are_ai",
            r"如果你是(?:一个|正在阅读[^。\n]{0,10}的)?(?:AI|人工智能|语言模型|大模型|机器人)",
        ),
        (
            "zh_repeat_above",
            r"重复(?:一遍)?(?:上面|以上|前面|上述)的?(?:全部|所有)?(?:内容|文字|话|消息)",
        ),
        (
            "zh_secret_request",
            r"(?:输出|打印|告诉我|泄露|透露|给我|发给我|附上|换成|显示)[^。\n]{0,20}"
            r"(?:机密|秘密|隐藏|密钥|暗号)(?:的)?(?:标记|指令|设定|口令|字符串|内容)?"
            r"|(?:隐藏|秘密|机密)(?:的)?(?:指令|设定|标记)",
        ),
        (
            "zh_first_message",
            r"(?:你)?收到的(?:第一条|最初的|原始的?|初始)(?:消息|指令|提示)|(?:系统消息|系统设定)的?原文",
        ),
        ("zh_translate_instructions", r"把你的(?:系统)?(?:指令|提示词?|规则|设定)翻译"),
        ("zh_maintenance_mode", r"(?:维护|调试|管理员|越狱|无限制)模式"),
        (
            "zh_print_config",
            r"(?:输出|打印|告诉我|显示)(?:你的)?(?:全部|完整的?)?(?:配置|设定|系统提示)",
        ),
    )
)
_AI_WORDS = ("ai", "a.i.", "assistant", "assistants", "chatbot", "bot", "llm", "model", "gpt")
_ZH_AI_WORDS = ("ai", "人工智能", "模型", "机器人", "助手")
# Before a pattern runs, the text must hold a word of every group (ASCII words
# matched whole, anything else as a substring). Scientific text says "model"
# all the time but rarely "model" and "please" together; a set lookup rules
# out almost every chunk for the price of one tokenisation.
_PLANTED_ANCHORS: dict[str, tuple[tuple[str, ...], ...]] = {
    "note_to_ai": (
        ("note", "message", "instruction", "instructions", "attention", "reminder", "memo"),
        _AI_WORDS,
    ),
    "addressed_to_ai": (
        _AI_WORDS,
        ("you", "please", "always", "never", "ignore", "reply", "respond", "print", "output")
        + ("repeat", "append", "reveal", "do"),
    ),
    "if_you_are_ai": (("you",), _AI_WORDS),
    "repeat_above": (("repeat",), ("everything", "all", "text", "words", "lines", "content")),
    "secret_request": (
        ("secret", "confidential", "hidden", "canary"),
        ("marker", "token", "string", "code", "key", "word", "phrase", "instruction")
        + ("instructions", "rules", "prompt", "markers", "tokens", "keys"),
    ),
    "translate_instructions": (("translate",), ("instructions", "prompt", "rules", "message")),
    "first_message": (
        ("prompt", "instructions", "message", "told", "instructed"),
        ("you",),
    ),
    "markdown_exfiltration": (("![",), ("http",)),
    "zh_addressed_to_ai": (_ZH_AI_WORDS,),
    "zh_if_you_are_ai": (("如果你是",),),
    "zh_repeat_above": (("重复",),),
    "zh_secret_request": (("机密", "秘密", "隐藏", "密钥", "暗号"),),
    "zh_first_message": (("收到的", "原文"),),
    "zh_translate_instructions": (("翻译",),),
    "zh_maintenance_mode": (("模式",),),
    "zh_print_config": (("配置", "设定", "系统提示"),),
}


def screen_planted(text: str) -> list[str]:
    """Names of the planted-note patterns ``text`` matches (empty: none)."""
    lowered = text.lower()
    words = set(_ASCII_WORD.findall(lowered))

    def present(anchor: str) -> bool:
        return (anchor in words) if anchor.isascii() and anchor.isalpha() else (anchor in lowered)

    def anchored(name: str) -> bool:
        return all(any(present(a) for a in group) for group in _PLANTED_ANCHORS[name])

    return [name for name, pattern in PLANTED_PATTERNS if anchored(name) and pattern.search(text)]


def screen_revealed(text: str, screen_plain: Callable[[str], list[str]]) -> list[str]:
    """Pattern names for ``text``: the plain screen, planted notes, and both over disguises.

    Args:
        text: A question or a retrieved chunk.
        screen_plain: The phrase screen of :mod:`rag.query.rules_pre`, run on
            the text and on each revealed reading.

    Returns:
        Pattern names in order, without duplicates; a match found only in a
        revealed reading is followed by ``"disguised_<kind>"``.
    """
    names = [*screen_plain(text), *screen_planted(text)]
    for kind, revealed in revealed_variants(text):
        hidden = [*screen_plain(revealed), *screen_planted(revealed)]
        if any(name not in names for name in hidden):
            names.extend([*hidden, f"disguised_{kind}"])
    return list(dict.fromkeys(names))


# --- canaries ---------------------------------------------------------------------------
def _squeeze(text: str) -> str:
    """Letters and digits only, case-folded, after NFKC and without invisible characters."""
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text)).casefold()
    return "".join(ch for ch in text if ch.isalnum())


def canary_leaked(text: str, canary: str) -> bool:
    """True when ``text`` gives away ``canary``: spaced, cased, reversed or encoded.

    The comparison ignores everything but letters and digits, so "C A N A R Y-1f2e",
    "canary_1f2e" and "CANARY 1F2E" all count; Base64 and hex renderings and
    the reversed string count too.
    """
    secret = _squeeze(canary)
    if not secret:
        return False
    candidates = [text, *(revealed for _, revealed in revealed_variants(text))]
    squeezed = [_squeeze(c) for c in candidates]
    return any(secret in s or secret[::-1] in s for s in squeezed)
