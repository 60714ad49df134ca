"""Prompt-injection screening beyond plain phrasing: hidden encodings, planted notes, canaries.

:func:`rag.query.rules_pre.screen_text_for_injection` matches instructions
written out in plain English or Chinese. Attackers also write them so that a
phrase list cannot see them (Base64, hex, ROT13, reversed, leetspeak, letters
spaced out, zero-width characters, look-alike Cyrillic letters), or plant
them in documents addressed to "the AI". This module reveals such text and
matches the planted-note phrasing; the screen runs its patterns over what is
revealed through :func:`screen_revealed`.

Phrase lists fit the attacks they were written from, so :func:`intent_signals`
adds patterns built from the structure of an injection (an order to drop the
reader's instructions, a request for what only the prompt holds, a role switch,
a claim of authority, a fake conversation turn, an order to carry out a
translated text) over a normalised reading (NFKC, no invisible characters,
traditional Chinese as simplified, lower case). A strong signal flags on its
own; weak ones, and phrase patterns that only name a thing ("system prompt",
"开发者模式"), flag in pairs.

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
from functools import lru_cache
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
    if _TRADITIONAL_CUE.search(visible):
        simplified = _to_simplified()(visible)
        if simplified != visible:
            found.append(("traditional", simplified))
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


# --- intent: what the text asks the reader to do ----------------------------------------
# A phrase list fits the attacks it was written from. The signals below are built from
# the structure of an injection instead: an order to drop the reader's instructions
# (verb + object), a request for what only the prompt holds (verb + secret object), a
# switch of role, a claim of authority, a fake turn of the conversation, an order to
# carry out a translated or decoded text. Each is weak or strong: a strong one flags on
# its own, weak ones only in pairs of different kinds, because a policy page may well
# say "new rules override older ones" or "SYSTEM: maintenance on Sunday" once.
_EN_END = r"[^.!?;\n。！？；]"  # a character of the same clause
_EN_DROP = (
    r"\b(?:ignore|ignoring|disregard|disregarding|forget|forgetting|override|bypass|skip|drop|"
    r"discard|abandon|ditch|set\s+aside|put\s+aside|throw\s+out|stop\s+(?:following|obeying|"
    r"applying|using)|no\s+longer\s+(?:follow|obey|apply)|not\s+(?:follow|obey))\b"
)
_EN_ORDERS = (
    r"(?:instructions?|rules?|rulebook|guidelines?|guidance|directions?|directives?|prompts?|"
    r"system\s+messages?|configuration|setup|constraints?|restrictions?|programming|"
    r"safety\s+(?:polic(?:y|ies)|rules|guidelines|filters?|settings))\b"
)
# Words that say the orders are the reader's own or came first.
_EN_THEIRS = (
    r"\b(?:your|yours|previous|prior|earlier|original|initial|above|preceding|foregoing|"
    r"system|operator'?s?|developer'?s?|hidden|safety)\b"
)
_EN_REVEAL = (
    r"\b(?:reveal|print|output|show|display|tell\s+(?:me|us|the\s+(?:user|reader)s?)|give\s+me|"
    r"share|paste|list|quote|repeat|write\s+(?:out|down)|disclose|leak|dump|spell\s+out|"
    r"read\s+out|recite|send\s+(?:me|us)|type\s+out|copy|include|append|add|summari[sz]e|"
    r"(?:respond|reply|answer)\s+(?:only\s+)?with|say)\b"
)
# What only the prompt holds: the reader's own instructions or a planted secret.
_EN_SECRET = (
    r"(?:\byour\s+(?:\w+\s+){0,2}?(?:system\s+)?(?:prompt|instructions|rules|guidelines|guidance|"
    r"directions|directives|setup|configuration|config|system\s+message|programming|"
    r"restrictions|secrets?)\b"
    r"|\b(?:hidden|secret|confidential|internal|initial|original|operator|developer)\s+"
    r"(?:\w+\s+)?(?:prompt|instructions|rules|guidelines|guidance|directions|directives|setup|"
    r"configuration|config|marker|token|string|phrase|canary)s?\b"
    r"|\bcanary\s+(?:string|token|marker|word|code)\b)"
)
# "system prompt" alone names a topic ("how do I write a good system prompt?"); asked
# for, it is a secret. The same goes for orders asked for in full ("print its instructions").
_EN_SYSTEM_TEXT = r"\b(?:the\s+)?system\s+(?:prompt|message|instructions)\b"
_EN_FULL_ORDERS = (
    r"\b(?:its|the|all|full|complete|entire)\s+(?:\w+\s+){0,2}?(?:instructions|prompt|"
    r"configuration|rules)\b"
)
# The text that came before the user's first message.
_EN_PRIOR = (
    r"\b(?:at|from)\s+the\s+(?:very\s+)?(?:top|start|beginning)\s+of\s+(?:this|the|our)\s+"
    r"(?:conversation|chat|session|thread|context)\b"
    r"|\bbefore\s+(?:my|the\s+user'?s?|this|our)\s+first\s+message\b"
    r"|\b(?:who|that)\s+(?:configured|programmed|set\s+up|instructed)\s+you\b"
    r"|\byou\s+(?:were|have\s+been|had\s+been)\s+(?:initiali[sz]ed|configured|programmed|"
    r"instructed|told|given|handed|sent)\b"
    r"|\b(?:instructions?|directions|guidance|text|everything)\s+(?:that\s+)?you\s+"
    r"(?:got|received|were\s+given)\b"
)
_EN_ROLE = (
    r"\byou(?:'re|\s+are)\s+(?:now\s+)?\w+,\s+an?\s+(?:\w+\s+)?(?:assistant|ai|bot|model)\b"
    r"|\b(?:let'?s|we\s+will)\s+play\s+a\s+game\b|\bimagine\s+(?:that\s+)?you\s+(?:are|were)\b"
    r"|\bas\s+that\s+version\s+of\s+yourself\b|\bfrom\s+(?:this|that)\s+point\s+on\b"
    r"|\bif\s+you\s+had\s+no\s+(?:rules|restrictions|limits|guidelines)\b"
)
_EN_ROLE_AS_AI = (
    r"\b(?:behave|act|respond)\s+(?:like|as)\s+(?:an?\s+)?(?:\w+\s+)?(?:ai|model|assistant|bot)\b"
)
_EN_UNBOUND = (
    r"\b(?:no|without\s+(?:any\s+)?)\s*(?:restrictions|rules|rulebook|limits|filters|guidelines)\b"
    r"|\b(?:unrestricted|unfiltered|uncensored)\b"
)
_EN_AUTHORITY = (
    r"\b(?:the\s+)?(?:admin|administrator|developer|operator|owner|it\s+department)s?\s+"
    r"(?:says|said|has\s+(?:authori[sz]ed|allowed|approved)|authori[sz]es|allows|permits|wants)"
    r"\b|\bi(?:'m|\s+am)\s+(?:authori[sz]ing|allowing|permitting)\s+you\b"
    r"|\bas\s+your\s+(?:developer|operator|creator|admin|administrator|owner)\b"
    r"|\b(?:has|have)\s+authori[sz]ed\s+you\b"
)
_EN_ADDRESSEE = (
    r"\b(?:dear|attention|hey|note\s+for|message\s+for)\s+(?:the\s+)?(?:assistant|ai|"
    r"language\s+model|model|chatbot|llm|automated\s+readers?)\b"
    r"|\bto\s+(?:the\s+)?(?:assistant|ai|language\s+model|chatbot|llm|automated\s+readers?|"
    r"system\s+reading)\b"
    r"|\bapplies\s+to\s+you\b|\byou,\s+the\s+(?:assistant|ai|model|reader)\b"
    r"|\b(?:assistant|language\s+model|llm|chatbot)\s*[:,：，]"
)
_EN_HIJACK = (
    r"\binstead\s+of\s+answering\b|\b(?:reply|respond|answer)\s+only\b|\bin\s+(?:every|each|your)\s+"
    r"(?:answer|reply|response)\b|\bbefore\s+(?:answering|you\s+answer|replying)\b"
    r"|\bto\s+(?:the|your)\s+(?:answer|reply)\b|\bno\s+longer\s+apply\b"
    r"|\b(?:is|are|have\s+been|has\s+been)\s+(?:now\s+)?(?:revoked|cancell?ed|void|suspended|"
    r"superseded|lifted)\b|\bsupersedes?\b|\btakes?\s+precedence\s+over\b"
)
_EN_EXECUTE = (
    r"\b(?:translate|decode|decipher|convert)\b[^\n]{0,120}?\b(?:then|and)\s+(?:carry\s+(?:it\s+)?"
    r"out|obey|follow|execute|act\s+on|do\s+(?:what|as)\s+it\s+says|do\s+it|comply)"
)
# Chinese: after NFKC and traditional-to-simplified conversion.
_ZH_END = r"[^。.!?;\n！？；]"
_ZH_DROP = (
    r"(?:忽略|忽视|无视|不要理会|不用理会|别理会|不必理会|不理会|别管|不用再?管|不要管|跳过|忘记|"
    r"忘掉|抛开|放下|放一放|丢掉|抛弃|绕过|不再(?:遵循|遵守|按照?|听从|服从)|停止(?:遵守|遵循|"
    r"服从)|不要再?(?:遵守|遵循|服从|听从))"
)
_ZH_ORDERS = (
    r"(?:指令|指示|提示词|规则|规矩|设定|准则|指引|限制|约束|条条框框|系统消息|系统提示|配置|"
    r"要求|安全政策|政策)"
)
_ZH_REVEAL = (
    r"(?:输出|打印|显示|展示|公开|告诉(?:我|用户|读者)|发给我|贴出|列出|写出|念给|复述|重复|"
    r"泄露|透露|附上|说出|引用|给我看|回复|作答|加在|附在)"
)
_ZH_SYSTEM_TEXT = r"系统(?:提示词|提示语|消息|讯息|指令|设定|规则)|系统提示(?![我你音])"
_ZH_FULL_ORDERS = r"(?:全部|所有|完整的?|整个|全套)的?(?:指令|设定|配置|提示词|规则|指示)"
_ZH_SECRET = (
    r"(?:你的(?:\w{0,4})?(?:提示词?|指令|指示|规则|规矩|设定|配置|说明|限制|准则)"
    r"|你的\s*(?:system\s*)?(?:prompt|instructions?|rules|configuration|config|setup|guidelines)"
    r"|(?:隐藏|秘密|机密|保密|内部|初始|原始)的?"
    r"(?:\w{0,2})?(?:提示词?|指令|指示|规则|设定|配置|说明|内容|密钥|字符|标记|部分|暗码)"
    r"|暗码|暗号|金丝雀|令牌|(?:配置|设定|系统消息)原文|那段(?:设定|说明|提示))"
)
_ZH_PRIOR = (
    r"(?:开头|一开始|最开始|最初|对话开始时|本文件之前|我发第一条消息之前)"
    r"|(?:你|之前|先前)收到的|给你的(?:指示|说明|设定|那些)|配置你的人"
)
_ZH_ROLE = (
    r"(?:我们)?来玩个游戏|(?:现在起|从现在起|从这里开始|从现在开始)[,，]?\s*你"
    r"|表现得像|以那个版本的你|假如你(?:完全)?没有|你是一个没有|(?:请|现在)\s*你(?:来|要|将|必须)?扮演|假装你是"
)
_ZH_UNBOUND = r"没有(?:任何)?(?:规矩|限制|约束|规则)|不受(?:任何)?(?:规则|限制|约束)|无限制"
_ZH_AUTHORITY = r"管理员(?:说|已?授权|允许|通知)|作为你的(?:开发|管理|创建)|我授权你|已?授权你"
_ZH_ADDRESSEE = (
    r"(?:亲爱的|致|写给|给)[^。\n]{0,10}?(?:助手|系统|模型|程序|机器人)[^。\n]{0,8}?[:,：，]|对你说的"
    r"|助手请注意|(?:读者)?助手[:,：，]|语言模型"
)
_ZH_HIJACK = (
    r"不要回答问题|改为输出|只回复|在(?:回复|回答|答案)(?:中|里|末尾)|附在回答|(?:已|已经)?(?:作废|"
    r"被取消|不再适用)|优先级最高|优先于|取代之前"
)
_ZH_EXECUTE = r"(?:翻译|解码|转换)[^\n]{0,60}?(?:照做|照着做|执行|照办|按.{0,6}做|and\s+obey|obey)"
_FAKE_TURN = (
    r"(?:^|\n)\s*(?:system|assistant|developer|tool|系统|助手)\s*[:：]"
    r"|\[/?(?:tool_output|tool|system|assistant_instructions|assistant)\]"
    r"|</?(?:system|instructions?|document)>|\{\s*\"role\"\s*:\s*\"(?:system|developer|tool)\""
    r"|【(?:系统|工具)\w{0,4}】|#{2,}\s*(?:instruction|response|system)s?\b|<!--"
)

_STRONG = 2
_WEAK = 1
INTENT_SIGNALS: tuple[tuple[str, int, re.Pattern[str]], ...] = tuple(
    (name, weight, re.compile(pattern))
    for name, weight, pattern in (
        ("intent_drop_orders", _STRONG,
         rf"{_EN_DROP}{_EN_END}{{0,40}}?{_EN_THEIRS}{_EN_END}{{0,25}}?{_EN_ORDERS}"
         rf"|{_EN_DROP}{_EN_END}{{0,30}}?{_EN_ORDERS}{_EN_END}{{0,20}}?\byou\s+(?:were|got|have)"),
        ("intent_drop_orders_weak", _WEAK,
         rf"{_EN_DROP}\s+(?:(?:the|all|any|these|those|every)\s+)?(?:\w+\s+){{0,2}}?{_EN_ORDERS}"),
        ("intent_reveal_secret", _STRONG,
         rf"{_EN_REVEAL}{_EN_END}{{0,50}}?(?:{_EN_SECRET}|{_EN_SYSTEM_TEXT})"),
        ("intent_reveal_orders", _WEAK, rf"{_EN_REVEAL}{_EN_END}{{0,30}}?{_EN_FULL_ORDERS}"),
        ("intent_reveal_prior", _STRONG,
         rf"{_EN_REVEAL}{_EN_END}{{0,60}}?(?:{_EN_PRIOR})|(?:{_EN_PRIOR}){_EN_END}{{0,60}}?[.?]"
         rf"\s*(?:quote|repeat|print|write|copy|recite)\b"),
        ("intent_secret", _WEAK, _EN_SECRET),
        ("intent_prior", _WEAK, _EN_PRIOR),
        ("intent_role", _WEAK, _EN_ROLE),
        ("intent_role_as_ai", _WEAK, _EN_ROLE_AS_AI),
        ("intent_unbound", _WEAK, _EN_UNBOUND),
        ("intent_authority", _WEAK, _EN_AUTHORITY),
        ("intent_addressee", _WEAK, _EN_ADDRESSEE),
        ("intent_hijack", _WEAK, _EN_HIJACK),
        ("intent_execute", _STRONG, _EN_EXECUTE),
        ("intent_fake_turn", _WEAK, _FAKE_TURN),
        ("zh_intent_drop_orders", _STRONG,
         rf"{_ZH_DROP}{_ZH_END}{{0,12}}?{_ZH_ORDERS}|{_ZH_DROP}{_ZH_END}{{0,6}}?(?:一切|所有|全部)"),
        ("zh_intent_reveal_secret", _STRONG,
         rf"(?:{_ZH_REVEAL}|{_EN_REVEAL}){_ZH_END}{{0,20}}?(?:{_ZH_SECRET}|{_ZH_SYSTEM_TEXT})"
         rf"|(?:{_ZH_SECRET}|{_ZH_SYSTEM_TEXT}){_ZH_END}{{0,20}}?(?:发给我|告诉我|告诉用户|告诉读者|"
         rf"贴出来|列出来|写出来|展示|公开|给我看|{_EN_REVEAL})"),
        ("zh_intent_reveal_orders", _WEAK, rf"{_ZH_REVEAL}{_ZH_END}{{0,8}}?{_ZH_FULL_ORDERS}"),
        ("zh_intent_reveal_prior", _STRONG,
         rf"(?:{_ZH_PRIOR}){_ZH_END}{{0,30}}?(?:原封不动|一字不漏|一字不差|逐字|完整|全部|原样)"
         rf"|(?:{_ZH_PRIOR}){_ZH_END}{{0,20}}?(?:写出|发给我|告诉我|引用|列出|输出)"
         rf"|(?:写出|发给我|输出|列出){_ZH_END}{{0,12}}?(?:{_ZH_PRIOR})"
         rf"|(?:{_ZH_PRIOR})[^\n]{{0,40}}?(?:逐字|原封不动|一字不漏|一字不差|原样)"),
        ("zh_intent_secret", _WEAK, _ZH_SECRET),
        ("zh_intent_prior", _WEAK, _ZH_PRIOR),
        ("zh_intent_role", _WEAK, _ZH_ROLE),
        ("zh_intent_unbound", _WEAK, _ZH_UNBOUND),
        ("zh_intent_authority", _WEAK, _ZH_AUTHORITY),
        ("zh_intent_addressee", _WEAK, _ZH_ADDRESSEE),
        ("zh_intent_hijack", _WEAK, _ZH_HIJACK),
        ("zh_intent_execute", _STRONG, _ZH_EXECUTE),
        ("zh_intent_jailbreak", _STRONG, r"越狱"),
    )
)  # fmt: skip

# Before a signal's pattern runs, the text must hold a word of every group of its
# anchors (ASCII words matched whole, anything else as a substring): set lookups
# and substring tests rule out almost every signal for almost every chunk.
_DROP_WORDS = tuple(
    "ignore ignoring disregard disregarding forget forgetting override bypass skip drop "
    "discard abandon ditch aside throw stop longer not".split()
)
_ORDER_WORDS = tuple(
    "instruction instructions rule rules rulebook guideline guidelines guidance direction "
    "directions directive directives prompt prompts message messages configuration setup "
    "constraint constraints restriction restrictions programming policy policies filter "
    "filters settings".split()
)
_REVEAL_WORDS = tuple(
    "reveal print output show display tell give share paste list quote repeat write disclose "
    "leak dump spell read recite send type copy include append add summarise summarize "
    "respond reply answer say".split()
)
_SECRET_WORDS = tuple(
    "your hidden secret confidential internal initial original operator developer canary "
    "system".split()
)
_SECRET_NOUNS = _ORDER_WORDS + tuple(
    "config secrets marker markers token tokens string phrase canary".split()
)
_PRIOR_WORDS = tuple(
    "top start beginning first configured programmed set instructed initialized initialised "
    "told given handed sent got received".split()
)
_ZH_DROP_CUES = tuple(
    "忽略 忽视 无视 理会 别管 再管 用管 要管 跳过 忘记 忘掉 抛开 放下 放一放 "
    "丢掉 抛弃 绕过 不再 停止 不要".split()
)
_ZH_ORDER_CUES = tuple(
    "指令 指示 提示 规则 规矩 设定 准则 指引 限制 约束 条条框框 配置 要求 政策 "
    "一切 所有 全部".split()
)
_ZH_REVEAL_CUES = tuple(
    "输出 打印 显示 展示 公开 告诉 发给我 贴出 列出 写出 念给 复述 重复 泄露 "
    "透露 附上 说出 引用 给我看 回复 作答 加在 附在".split()
)
_ZH_SECRET_CUES = tuple(
    "你的 系统 隐藏 秘密 机密 保密 内部 初始 原始 暗码 暗号 金丝雀 令牌 原文 那段".split()
)
_ZH_SECRET_NOUN_CUES = tuple(
    "提示 指令 指示 规则 规矩 设定 配置 说明 限制 准则 消息 讯息 内容 密钥 字符 "
    "标记 部分 暗码 暗号 金丝雀 令牌 原文".split()
)
_ZH_PRIOR_CUES = tuple(
    "开头 一开始 最开始 最初 对话开始时 本文件之前 第一条消息之前 收到的 给你的 配置你的人".split()
)
_INTENT_ANCHORS: dict[str, tuple[tuple[str, ...], ...]] = {
    "intent_drop_orders": (_DROP_WORDS, _ORDER_WORDS),
    "intent_drop_orders_weak": (_DROP_WORDS, _ORDER_WORDS),
    "intent_reveal_secret": (_REVEAL_WORDS, _SECRET_WORDS, _SECRET_NOUNS),
    "intent_reveal_prior": (("you",), _PRIOR_WORDS),
    "intent_reveal_orders": (_REVEAL_WORDS, _SECRET_NOUNS),
    "intent_secret": (_SECRET_WORDS, _SECRET_NOUNS),
    "intent_prior": (("you",), _PRIOR_WORDS),
    "intent_role": (("you", "yourself", "game", "imagine", "point"),),
    "intent_role_as_ai": (("behave", "act", "respond"), ("ai", "model", "assistant", "bot")),
    "intent_unbound": (
        ("restrictions", "rules", "rulebook", "limits", "filters", "guidelines", "unrestricted")
        + ("unfiltered", "uncensored"),
    ),
    "intent_authority": (
        ("admin", "administrator", "administrators", "developer", "operator", "owner", "department")
        + ("authorising", "authorizing", "authorised", "authorized", "allowing", "permitting"),
    ),
    "intent_addressee": (
        tuple("assistant ai model chatbot llm readers reader reading you".split()),
        tuple(
            "dear attention hey note message applies you assistant llm chatbot language ai".split()
        )
        + ("automated", "reading"),
    ),
    "intent_hijack": (
        tuple(
            "instead answer answering reply replying respond response apply revoked cancelled "
            "canceled void suspended superseded supersede supersedes lifted precedence".split()
        ),
    ),
    "intent_execute": (
        ("translate", "decode", "decipher", "convert"),
        ("obey", "follow", "execute", "act", "do", "comply", "carry"),
    ),
    "intent_fake_turn": (
        ("system:", "system :", "assistant:", "developer:", "tool:", "系统:", "系统：", "助手:")
        + ("助手：", "【系统", "【工具", "<!--", "##", "[tool", "[system", "[assistant", "[/")
        + ("<system", "</system", "<instruction", "</instruction", "<document", "</document")
        + ('"role"',),
    ),
    "zh_intent_drop_orders": (_ZH_DROP_CUES, _ZH_ORDER_CUES),
    "zh_intent_reveal_secret": (
        _ZH_REVEAL_CUES + _REVEAL_WORDS,
        _ZH_SECRET_CUES,
        _ZH_SECRET_NOUN_CUES + _SECRET_NOUNS,
    ),
    "zh_intent_reveal_orders": (_ZH_REVEAL_CUES, ("全部", "所有", "完整", "整个", "全套")),
    "zh_intent_reveal_prior": (_ZH_PRIOR_CUES,),
    "zh_intent_secret": (_ZH_SECRET_CUES, _ZH_SECRET_NOUN_CUES),
    "zh_intent_prior": (_ZH_PRIOR_CUES,),
    "zh_intent_role": (
        ("游戏", "现在起", "这里开始", "现在开始", "表现得像", "版本的你", "假如你", "你是一个没有")
        + ("扮演", "假装你是"),
    ),
    "zh_intent_unbound": (("没有", "不受", "无限制"),),
    "zh_intent_authority": (("管理员", "作为你的", "授权"),),
    "zh_intent_addressee": (
        ("亲爱的", "致", "给", "对你说的", "助手请注意", "助手:", "助手：", "助手,", "助手，")
        + ("语言模型",),
        ("助手", "系统", "模型", "程序", "机器人", "对你说的", "语言模型"),
    ),
    "zh_intent_hijack": (
        ("不要回答问题", "改为输出", "只回复", "在回复", "在回答", "在答案", "附在回答", "作废")
        + ("被取消", "不再适用", "优先级最高", "优先于", "取代之前"),
    ),
    "zh_intent_execute": (("翻译", "解码", "转换"),),
    "zh_intent_jailbreak": (("越狱",),),
}

_CJK = re.compile("[\u3400-\u9fff]")
# Frequent characters written only in traditional script: one of them in a text is
# the cue to convert it to simplified before matching (the conversion costs about
# 0.1 µs a character, the cue a single scan).
_TRADITIONAL_CUE = re.compile(
    "[們這個說對時會來過還從現與為應開關體點係問題設統訊號無視請經長門東車書話語認識讓議論區醫學習實寫見親"
    "覺觀發國際間處將總後麼產義務屬於遠辦週兩權並隱給讀員內僅顯輸絕機碼誰當頭樣裡沒聽錄範規則導嗎準變歡據適]"
)


@lru_cache(maxsize=1)
def _to_simplified() -> Callable[[str], str]:
    import opencc  # a core dependency; imported here so that importing the screen stays cheap

    convert: Callable[[str], str] = opencc.OpenCC("t2s").convert
    return convert


def normalized_for_screen(text: str) -> str:
    """``text`` as the intent patterns read it.

    With a rare character present (fullwidth, circled or mathematical letters,
    invisible characters, look-alikes), NFKC and invisible characters removed;
    traditional Chinese converted to simplified; lower case. Plain Chinese is
    not NFKC-normalised: its fullwidth punctuation alone would make that the
    costliest step of the screen, and the patterns accept both forms.
    """
    if _RARE_CHARACTER.search(text):
        text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    if _TRADITIONAL_CUE.search(text):
        text = _to_simplified()(text)
    return text.lower()


def intent_signals(text: str) -> dict[str, int]:
    """The intent signals ``text`` holds, by name, with their weights (1 weak, 2 strong)."""
    normalized = normalized_for_screen(text)
    # Every anchor the text holds, found once: ASCII words by one tokenisation, the
    # others by one pattern searched from every position where one starts.
    present = set(_INTENT_WORD.findall(normalized))
    match = _SUBSTRING_ANCHOR.search(normalized)
    while match:
        present |= _ANCHORS_INSIDE[match.group()]
        match = _SUBSTRING_ANCHOR.search(normalized, match.start() + 1)
    chinese = _CJK.search(normalized) is not None
    found: dict[str, int] = {}
    for name, weight, pattern in INTENT_SIGNALS:
        if name.startswith("zh_") and not chinese:
            continue
        if all(not present.isdisjoint(group) for group in _ANCHOR_SETS[name]) and pattern.search(
            normalized
        ):
            found[name] = weight
    return found


_ANCHOR_SETS = {
    name: tuple(frozenset(group) for group in groups) for name, groups in _INTENT_ANCHORS.items()
}
_SUBSTRING_ANCHORS = sorted(
    {
        a
        for groups in _INTENT_ANCHORS.values()
        for group in groups
        for a in group
        if not (a.isascii() and a.isalpha())
    },
    key=len,
    reverse=True,
)
# Longest first, so a match is the longest anchor starting there; the shorter ones
# it holds are added with it.
_SUBSTRING_ANCHOR = re.compile("|".join(map(re.escape, _SUBSTRING_ANCHORS)))
_ANCHORS_INSIDE = {
    a: frozenset(b for b in _SUBSTRING_ANCHORS if b in a) for a in _SUBSTRING_ANCHORS
}


_INTENT_WORD = re.compile(r"[a-z]+")


# Phrase-pattern names that name a thing rather than order anything ("系统提示我输入密码",
# "开发者模式", "角色扮演培训", "切勿泄露密钥"): each counts as one weak signal.
WEAK_PHRASE_PATTERNS = frozenset(
    {"system_prompt", "zh_system_prompt", "zh_role_play", "zh_jailbreak", "zh_secret_request",
     "zh_maintenance_mode", "zh_print_config", "zh_disobey"}
)  # fmt: skip


def _assessed(text: str, screen_plain: Callable[[str], list[str]]) -> list[str]:
    """Pattern names for ``text`` when its signals add up to a flag, else nothing."""
    phrases = [*screen_plain(text), *screen_planted(text)]
    if any(name not in WEAK_PHRASE_PATTERNS for name in phrases):
        return phrases
    signals = intent_signals(text)
    score = len(phrases) + sum(signals.values())
    return [*phrases, *signals] if score >= _STRONG else []


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
    names = _assessed(text, screen_plain)
    for kind, revealed in revealed_variants(text):
        hidden = _assessed(revealed, screen_plain)
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
