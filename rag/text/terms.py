"""The one tokeniser for keyword search: BM25 indexing, query keywords, citation overlap.

Chinese runs are cut by jieba in search mode (overlapping words, so a query
term matches both a word and its compounds); Latin text is lower-cased, split
into words, stripped of a light stop-word list and (optionally) Snowball-
stemmed so "treatments" matches "treatment".
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from functools import lru_cache

from rag.text.normalize import nfkc

log = logging.getLogger(__name__)

_TOKEN = re.compile(
    r"(?P<cjk>[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+)|(?P<word>[^\W_]+(?:['’][^\W_]+)?)"
)

ENGLISH_STOP_WORDS = frozenset(
    """a an and are as at be but by for if in into is it its of on or such that the their then
    there these they this to was were will with from which who whom what when where why how
    been being has have had do does did not no nor so than too very can could should would
    may might must shall about above after again against all am any because before below
    between both during each few further here i me my myself we our ours you your he him his
    she her hers them themselves those through under until up down out off over only own same
    some other s t just don now""".split()
)
CHINESE_STOP_WORDS = frozenset(
    """的 了 和 是 在 就 都 而 及 与 着 或 一个 没有 我们 你们 他们 她们 它们 这 那 之
    也 于 以 被 把 让 给 对 从 并 等 吗 呢 吧 啊 呀 么 其 此 该 各 为 所 由 向
    个 中 上 下 这个 那个 什么 怎么 如何
    哪些 哪个 请问 请 是否 有 有没有 哪 哪里 哪儿 哪种 哪类 多少 几 为什么 为何 谁 怎样""".split()
)
# Bump when tokenisation changes: cached evaluation indexes are keyed by it.
TOKENIZER_VERSION = 2
_jieba_lock = threading.Lock()


@lru_cache(maxsize=1)
def _jieba():  # type: ignore[no-untyped-def]
    import jieba

    jieba.setLogLevel(logging.WARNING)
    with _jieba_lock:
        jieba.initialize()
    return jieba


@lru_cache(maxsize=1)
def _stemmer():  # type: ignore[no-untyped-def]
    import Stemmer  # PyStemmer: C Snowball stemmers

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    return _stemmer().stemWord(word)


def tokenize(text: str, *, stem: bool = True, drop_stop_words: bool = True) -> list[str]:
    """Terms of ``text`` for BM25, in order, duplicates kept.

    Args:
        text: Any mix of Chinese and English.
        stem: Snowball-stem Latin words.
        drop_stop_words: Remove the light English and Chinese stop-word lists.
    """
    text = nfkc(text).lower()
    out: list[str] = []
    for match in _TOKEN.finditer(text):
        cjk = match.group("cjk")
        if cjk:
            for word in _jieba().cut_for_search(cjk):
                if drop_stop_words and word in CHINESE_STOP_WORDS:
                    continue
                out.append(word)
            continue
        word = match.group("word")
        if word.endswith(("'s", "’s")):
            word = word[:-2]  # possessive: "France's" is "France"
        if drop_stop_words and word in ENGLISH_STOP_WORDS:
            continue
        if stem and word.isascii() and word.isalpha() and len(word) > 3:
            word = _stem(word)
        out.append(word)
    return out


def term_set(text: str, *, stem: bool = True) -> set[str]:
    """Distinct content terms (for overlap checks)."""
    return set(tokenize(text, stem=stem))


def tokenize_many(texts: Iterable[str], *, stem: bool = True) -> list[list[str]]:
    """:func:`tokenize` over many texts."""
    return [tokenize(t, stem=stem) for t in texts]
