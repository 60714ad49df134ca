"""Okapi BM25 keyword index that adds and deletes chunks without rebuilding.

rank-bm25 scores every chunk for every query (~160 ms at 100k chunks, 1.6 s
at 1M) and cannot add or delete, so an upload would rebuild the whole index.
This index keeps the same scores (a test checks them against rank-bm25's
``BM25Okapi`` to 1e-6) in structures that change in place:

* an inverted index: term id -> growable ``array('i')`` of interleaved
  ``(slot, tf)`` pairs, so adding a chunk costs O(its tokens);
* a forward index: slot -> (term ids, tfs) in flat growable arrays, so a
  delete can decrement document frequencies and a search restricted to a few
  chunks (one document's) scores just those chunks;
* deletes are tombstones: the chunk's slot is marked dead and N, the average
  length and the document frequencies change at once (scores equal those of
  an index built on the survivors); when more than a quarter of the slots are
  dead the arrays are compacted.

Scoring, for each query term t (a term repeated in the query counts each time,
as in rank-bm25's ``get_scores``) and chunk d::

    idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(d) / avgdl))

``k1`` (default 1.2) caps how much repeating a term helps: the term's weight
tends to ``idf * (k1 + 1)`` as tf grows; 0 ignores tf. ``b`` (0.75) sets how
much a long chunk is penalised: 0 ignores length, 1 fully divides by the
relative length.
"""

from __future__ import annotations

import json
import logging
import threading
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain, compress
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from rag.errors import IndexInconsistent, InvalidInput
from rag.index.atomic import atomic_write
from rag.text.terms import tokenize
from rag.types import ScoredId

if TYPE_CHECKING:
    from rag.settings import IndexSettings

log = logging.getLogger(__name__)

IdfKind = Literal["lucene", "okapi"]

FORMAT_NAME = "rag-bm25"
FORMAT_VERSION = 1
# rank-bm25's BM25Okapi default: a term in more than half of the chunks (negative
# raw idf) gets epsilon times the vocabulary's average idf instead.
OKAPI_EPSILON = 0.25
# Compact when more than this share of slots are tombstones: the dead postings
# then cost more query time than the compaction (amortised O(1) per delete).
COMPACT_DEAD_SHARE = 0.25
# Below this many new postings, appending pair by pair beats sorting.
_SMALL_BATCH_POSTINGS = 4096

if array("i").itemsize != 4:  # pragma: no cover - every supported platform has 32-bit int
    raise ImportError("BM25Index needs a 4-byte C int for array('i')")


class _Growable:
    """A 1-D numpy array with amortised O(1) appends (the capacity doubles)."""

    __slots__ = ("_buf", "_n")

    def __init__(self, dtype: type | np.dtype, values: np.ndarray | None = None) -> None:
        if values is None:
            self._buf = np.zeros(16, dtype=dtype)
            self._n = 0
        else:
            self._buf = np.ascontiguousarray(values, dtype=dtype).copy()
            self._n = len(self._buf)

    def __len__(self) -> int:
        return self._n

    @property
    def view(self) -> np.ndarray:
        """The filled part (a view: valid until the next append)."""
        return self._buf[: self._n]

    def extend(self, values: np.ndarray) -> None:
        """Append ``values``."""
        end = self._n + len(values)
        if end > len(self._buf):
            grown = np.zeros(max(end, 2 * len(self._buf)), dtype=self._buf.dtype)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n : end] = values
        self._n = end


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each start and count (vectorised)."""
    counts = counts.astype(np.int64, copy=False)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(counts) - counts
    return np.repeat(starts.astype(np.int64) - offsets, counts) + np.arange(total, dtype=np.int64)


def lucene_idf(n_docs: int | np.ndarray, df: np.ndarray) -> np.ndarray:
    """Lucene's BM25 idf, ``log(1 + (N - n + 0.5) / (n + 0.5))``: never negative."""
    return np.log1p((n_docs - df + 0.5) / (df + 0.5))


def okapi_raw_idf(n_docs: int | np.ndarray, df: np.ndarray) -> np.ndarray:
    """Robertson-Sparck Jones idf ``log((N - n + 0.5) / (n + 0.5))`` (negative above N/2)."""
    return np.log(n_docs - df + 0.5) - np.log(df + 0.5)


class BM25Index:
    """Incremental BM25 index over chunk texts keyed by int64 chunk id (a ``SparseIndex``).

    Thread-safe: one lock serialises mutations and searches (a search takes
    about a millisecond at 100k chunks).

    Args:
        k1: Term-frequency saturation, >= 0 (see the module docstring).
        b: Length normalisation, between 0 and 1.
        idf: ``"lucene"`` (never negative) or ``"okapi"`` (exactly rank-bm25's
            ``BM25Okapi``, negative idfs replaced by 0.25 x the average idf).
        stem: Snowball-stem English terms (indexing and queries alike).
    """

    def __init__(
        self, k1: float = 1.2, b: float = 0.75, idf: IdfKind = "lucene", stem: bool = True
    ) -> None:
        if not (isinstance(k1, int | float) and 0.0 <= k1 <= 100.0):
            raise InvalidInput(f"k1 must be between 0 and 100, got {k1!r}")
        if not (isinstance(b, int | float) and 0.0 <= b <= 1.0):
            raise InvalidInput(f"b must be between 0 and 1, got {b!r}")
        if idf not in ("lucene", "okapi"):
            raise InvalidInput(f"idf must be 'lucene' or 'okapi', got {idf!r}")
        self.k1 = float(k1)
        self.b = float(b)
        self.idf: IdfKind = idf
        self.stem = bool(stem)
        self._lock = threading.RLock()
        self._reset()

    @classmethod
    def from_settings(cls, settings: IndexSettings) -> BM25Index:
        """An empty index configured by ``settings`` (bm25_k1, bm25_b, bm25_idf, bm25_stem)."""
        return cls(
            k1=settings.bm25_k1, b=settings.bm25_b, idf=settings.bm25_idf, stem=settings.bm25_stem
        )

    def _reset(self) -> None:
        self._vocab: dict[str, int] = {}
        self._postings: list[array] = []  # term id -> interleaved (slot, tf) int32
        self._df = _Growable(np.int64)  # term id -> live chunks holding it
        self._slot_ids = _Growable(np.int64)  # slot -> chunk id
        self._alive = _Growable(np.bool_)
        self._doc_len = _Growable(np.int32)  # slot -> tokens
        self._fwd_start = _Growable(np.int64)  # slot -> first entry in _fwd_*
        self._fwd_count = _Growable(np.int32)  # slot -> distinct terms
        self._fwd_tids = _Growable(np.int32)
        self._fwd_tfs = _Growable(np.int32)
        self._slot_of: dict[int, int] = {}  # chunk id -> slot (live only)
        self._total_len = 0  # tokens over live chunks
        # derived from N, avgdl and df: computed on the first search after a change
        self._avg_okapi_idf: float | None = None
        self._length_norm: np.ndarray | None = None

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        """Number of live chunks."""
        return len(self._slot_of)

    def __contains__(self, chunk_id: object) -> bool:
        return chunk_id in self._slot_of

    def ids(self) -> np.ndarray:
        """All live chunk ids, int64, sorted."""
        with self._lock:
            return np.sort(np.fromiter(self._slot_of, dtype=np.int64, count=len(self._slot_of)))

    @property
    def vocabulary_size(self) -> int:
        """Terms held in at least one live chunk."""
        with self._lock:
            return int(np.count_nonzero(self._df.view))

    @property
    def dead_share(self) -> float:
        """Share of slots that are tombstones awaiting compaction."""
        slots = len(self._slot_ids)
        return 0.0 if slots == 0 else 1.0 - len(self._slot_of) / slots

    def tokenize_query(self, text: str) -> list[str]:
        """Terms of ``text`` exactly as chunks were indexed (same tokeniser and stemming)."""
        return tokenize(text, stem=self.stem)

    # ------------------------------------------------------------------ writing

    def add(self, ids: Sequence[int], texts: Sequence[str]) -> None:
        """Index ``texts`` under ``ids``.

        Raises:
            InvalidInput: lengths differ, or an id is repeated or already present.
        """
        if len(ids) != len(texts):
            raise InvalidInput(f"got {len(ids)} ids for {len(texts)} texts; pass one id per text")
        self.add_tokens(ids, [tokenize(text, stem=self.stem) for text in texts])

    def add_tokens(self, ids: Sequence[int], token_lists: Sequence[Sequence[str]]) -> None:
        """Index already tokenised chunks (use :meth:`tokenize_query`'s tokeniser).

        Costs O(tokens of the new chunks): nothing already indexed is touched.

        Raises:
            InvalidInput: lengths differ, or an id is repeated or already present.
        """
        if len(ids) != len(token_lists):
            raise InvalidInput(
                f"got {len(ids)} ids for {len(token_lists)} token lists; pass one id per chunk"
            )
        new_ids = [int(i) for i in ids]
        if not new_ids:
            return
        if len(set(new_ids)) != len(new_ids):
            repeated = sorted(i for i, c in Counter(new_ids).items() if c > 1)[:5]
            raise InvalidInput(f"chunk ids repeat within one add: {repeated}; ids must be unique")
        with self._lock:
            present = [i for i in new_ids if i in self._slot_of][:5]
            if present:
                raise InvalidInput(
                    f"chunk ids {present} are already in the BM25 index; remove them first"
                )
            tids, tfs, distinct, doc_len = self._count_terms(token_lists)
            n_new = len(new_ids)
            total = len(tids)
            first = len(self._slot_ids)
            slots = np.arange(first, first + n_new, dtype=np.int32)

            self._fwd_start.extend(len(self._fwd_tids) + np.cumsum(distinct) - distinct)
            self._fwd_count.extend(distinct)
            self._fwd_tids.extend(tids)
            self._fwd_tfs.extend(tfs)
            self._slot_ids.extend(np.asarray(new_ids, dtype=np.int64))
            self._alive.extend(np.ones(n_new, dtype=np.bool_))
            self._doc_len.extend(doc_len)
            self._append_postings(tids, np.repeat(slots, distinct), tfs)
            self._add_df(tids, +1)
            self._slot_of.update(zip(new_ids, range(first, first + n_new), strict=True))
            self._total_len += int(doc_len.sum(dtype=np.int64))
            self._statistics_changed()
        log.debug("bm25 added chunks=%d postings=%d", n_new, total)

    def _count_terms(
        self, token_lists: Sequence[Sequence[str]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Forward entries of new chunks, registering unseen terms.

        Returns (term ids, tfs) of each chunk's distinct terms, chunk after
        chunk with term ids ascending, then distinct-term counts and lengths.
        Counting is one numpy sort over the batch's tokens rather than a
        Python dict per chunk.
        """
        vocab = self._vocab
        unseen = {term for term in set(chain.from_iterable(token_lists)) if term not in vocab}
        for term in sorted(unseen):  # sorted: the same ids whatever the set order
            vocab[term] = len(vocab)
        self._postings.extend(array("i") for _ in range(len(unseen)))
        self._df.extend(np.zeros(len(unseen), dtype=np.int64))

        doc_len = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
        n_tokens = int(doc_len.sum())
        token_ids = np.fromiter(
            map(vocab.__getitem__, chain.from_iterable(token_lists)), dtype=np.int64, count=n_tokens
        )
        owner = np.repeat(np.arange(len(token_lists), dtype=np.int64), doc_len)
        keys, tfs = np.unique(owner * len(vocab) + token_ids, return_counts=True)
        distinct = np.bincount(keys // len(vocab), minlength=len(token_lists))
        tids = (keys % len(vocab)).astype(np.int32)
        return tids, tfs.astype(np.int32), distinct.astype(np.int32), doc_len.astype(np.int32)

    def _append_postings(self, tids: np.ndarray, slots: np.ndarray, tfs: np.ndarray) -> None:
        postings = self._postings
        if len(tids) <= _SMALL_BATCH_POSTINGS:
            for tid, slot, tf in zip(tids.tolist(), slots.tolist(), tfs.tolist(), strict=True):
                plist = postings[tid]
                plist.append(slot)
                plist.append(tf)
            return
        order = np.argsort(tids, kind="stable")  # stable: slots stay ascending per term
        sorted_tids = tids[order]
        pairs = np.empty((len(tids), 2), dtype=np.int32)
        pairs[:, 0] = slots[order]
        pairs[:, 1] = tfs[order]
        raw = pairs.reshape(-1).view(np.uint8).data
        bounds = np.flatnonzero(np.diff(sorted_tids)) + 1
        starts = np.concatenate(([0], bounds))
        ends = np.concatenate((bounds, [len(tids)]))
        for tid, start, end in zip(
            sorted_tids[starts].tolist(), (starts * 8).tolist(), (ends * 8).tolist(), strict=True
        ):
            postings[tid].frombytes(raw[start:end])

    def _add_df(self, tids: np.ndarray, sign: int) -> None:
        terms, counts = np.unique(tids, return_counts=True)
        self._df.view[terms] += sign * counts

    def remove(self, ids: Iterable[int]) -> int:
        """Remove chunks (unknown ids are ignored); returns how many were removed.

        Statistics change at once; the postings are compacted once more than a
        quarter of the slots are dead.
        """
        with self._lock:
            slot_list = [self._slot_of.pop(int(i)) for i in ids if int(i) in self._slot_of]
            if not slot_list:
                return 0
            slots = np.asarray(slot_list, dtype=np.int64)
            self._alive.view[slots] = False
            entries = _ranges(self._fwd_start.view[slots], self._fwd_count.view[slots])
            self._add_df(self._fwd_tids.view[entries], -1)
            self._total_len -= int(self._doc_len.view[slots].sum(dtype=np.int64))
            self._statistics_changed()
            if self.dead_share > COMPACT_DEAD_SHARE:
                self.compact()
        log.debug("bm25 removed chunks=%d", len(slot_list))
        return len(slot_list)

    def compact(self) -> None:
        """Drop tombstoned chunks and unused terms from every array (scores do not change)."""
        with self._lock:
            dead = len(self._slot_ids) - len(self._slot_of)
            unused = len(self._df) - int(np.count_nonzero(self._df.view))
            if dead == 0 and unused == 0:
                return
            state, postings = self._live_state()
            self._reset()
            self._restore(state, postings)
        log.info("bm25 compacted dead_slots=%d unused_terms=%d", dead, unused)

    def _live_state(self) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray]]:
        """Compact copies of every array without dead slots or unused terms.

        Returns the arrays :meth:`_restore` takes and the postings as CSR
        (pointers per term, (slot, tf) pairs). Linear in the postings: dead
        pairs are masked out and slots renumbered, nothing is sorted.
        """
        alive = self._alive.view
        live = np.flatnonzero(alive)
        df = self._df.view
        used = df > 0
        new_tid = (np.cumsum(used) - 1).astype(np.int32)
        counts = self._fwd_count.view[live]
        entries = _ranges(self._fwd_start.view[live], counts)
        state = {
            "terms": list(compress(self._vocab, used.tolist())),
            "df": df[used],
            "slot_ids": self._slot_ids.view[live],
            "doc_len": self._doc_len.view[live],
            "fwd_count": counts,
            "fwd_tids": new_tid[self._fwd_tids.view[entries]],
            "fwd_tfs": self._fwd_tfs.view[entries],
        }
        n_terms = len(self._postings)
        lengths = np.fromiter(map(len, self._postings), dtype=np.int64, count=n_terms) // 2
        pairs = np.frombuffer(b"".join(self._postings), dtype=np.int32).reshape(-1, 2)
        if len(live) < len(alive):
            new_slot = np.full(len(alive), -1, dtype=np.int32)
            new_slot[live] = np.arange(len(live), dtype=np.int32)
            keep = alive[pairs[:, 0]]
            term_of_pair = np.repeat(np.arange(n_terms), lengths)
            lengths = np.bincount(term_of_pair[keep], minlength=n_terms)
            pairs = pairs[keep]
            pairs[:, 0] = new_slot[pairs[:, 0]]
        pointers = np.concatenate(([0], np.cumsum(lengths[used])))  # unused terms hold none
        return state, (pointers, pairs)

    def _restore(self, state: dict[str, Any], postings: tuple[np.ndarray, np.ndarray]) -> None:
        """Fill an empty index from compact arrays (no tombstones, every term used)."""
        terms: list[str] = state["terms"]
        self._vocab = {term: i for i, term in enumerate(terms)}
        self._df = _Growable(np.int64, state["df"])
        slot_ids = state["slot_ids"]
        n = len(slot_ids)
        counts = np.asarray(state["fwd_count"], dtype=np.int32)
        self._slot_ids = _Growable(np.int64, slot_ids)
        self._alive = _Growable(np.bool_, np.ones(n, dtype=np.bool_))
        self._doc_len = _Growable(np.int32, state["doc_len"])
        self._fwd_count = _Growable(np.int32, counts)
        self._fwd_start = _Growable(np.int64, np.cumsum(counts, dtype=np.int64) - counts)
        self._fwd_tids = _Growable(np.int32, state["fwd_tids"])
        self._fwd_tfs = _Growable(np.int32, state["fwd_tfs"])
        self._slot_of = dict(zip(slot_ids.tolist(), range(n), strict=True))
        self._total_len = int(self._doc_len.view.sum(dtype=np.int64))
        self._postings = [array("i") for _ in range(len(terms))]
        pointers, pairs = postings
        raw = np.ascontiguousarray(pairs, dtype=np.int32).reshape(-1).view(np.uint8).data
        bounds = (np.asarray(pointers, dtype=np.int64) * 8).tolist()
        for tid, plist in enumerate(self._postings):
            plist.frombytes(raw[bounds[tid] : bounds[tid + 1]])

    # ------------------------------------------------------------------ search

    def search(self, query: str, k: int, allowed_ids: np.ndarray | None = None) -> list[ScoredId]:
        """Top ``k`` chunks by BM25 score (> 0 only), best first.

        Args:
            query: Free text, tokenised like the chunks.
            k: How many results at most (>= 1).
            allowed_ids: When given, only these chunk ids are scored.

        Raises:
            InvalidInput: ``k`` < 1.
        """
        return self.search_tokens(self.tokenize_query(query), k, allowed_ids)

    def search_tokens(
        self, tokens: Sequence[str], k: int, allowed_ids: np.ndarray | None = None
    ) -> list[ScoredId]:
        """:meth:`search` for a query already tokenised with :meth:`tokenize_query`."""
        if not isinstance(k, int | np.integer) or k < 1:
            raise InvalidInput(f"k must be at least 1, got {k!r}")
        with self._lock:
            if not self._slot_of:
                return []
            query_terms = Counter(tid for tid in map(self._vocab.get, tokens) if tid is not None)
            df = self._df.view
            query_terms = Counter({t: c for t, c in query_terms.items() if df[t] > 0})
            if not query_terms:
                return []
            tids = np.fromiter(query_terms.keys(), dtype=np.int64, count=len(query_terms))
            repeats = np.fromiter(query_terms.values(), dtype=np.float64, count=len(tids))
            weights = self._idf(tids) * repeats
            if allowed_ids is None:
                slots, scores = self._score_postings(tids, weights, None)
            else:
                allowed = self._allowed_slots(allowed_ids)
                if len(allowed) == 0:
                    return []
                forward_cost = int(self._fwd_count.view[allowed].sum(dtype=np.int64))
                postings_cost = sum(len(self._postings[t]) // 2 for t in tids.tolist())
                if forward_cost <= postings_cost:
                    slots, scores = self._score_forward(allowed, tids, weights)
                else:
                    slots, scores = self._score_postings(tids, weights, allowed)
            return self._top_k(slots, scores, k)

    def score_ceiling(self, tokens: Sequence[str]) -> float:
        """The most a chunk could score for this query: every term matched, tf saturated.

        Terms absent from the index count at the idf of an unseen term, so a
        query made of words the corpus never uses has a high ceiling and a low
        best-score share (the 'not found' gate divides by this).
        """
        with self._lock:
            if not tokens:
                return 0.0
            n_docs = len(self._slot_of)
            df = self._df.view
            counts = Counter(tokens)
            dfs = np.array(
                [df[tid] if (tid := self._vocab.get(t)) is not None else 0 for t in counts],
                dtype=np.float64,
            )
            repeats = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            idf = lucene_idf(max(n_docs, 1), dfs)
            return float((idf * repeats).sum() * (self.k1 + 1.0))

    def _allowed_slots(self, allowed_ids: np.ndarray) -> np.ndarray:
        get = self._slot_of.get
        found = (get(i) for i in np.asarray(allowed_ids, dtype=np.int64).ravel().tolist())
        return np.unique(np.fromiter((s for s in found if s is not None), dtype=np.int64))

    def _idf(self, tids: np.ndarray) -> np.ndarray:
        n_docs = len(self._slot_of)
        df = self._df.view[tids].astype(np.float64)
        if self.idf == "lucene":
            return lucene_idf(n_docs, df)
        idf = okapi_raw_idf(n_docs, df)
        negative = idf < 0
        if negative.any():
            idf[negative] = OKAPI_EPSILON * self._average_okapi_idf()
        return idf

    def _average_okapi_idf(self) -> float:
        """Mean raw idf over the live vocabulary (what rank-bm25 floors negatives with)."""
        if self._avg_okapi_idf is None:
            df = self._df.view
            used = df[df > 0].astype(np.float64)
            self._avg_okapi_idf = float(okapi_raw_idf(len(self._slot_of), used).mean())
        return self._avg_okapi_idf

    def _statistics_changed(self) -> None:
        self._avg_okapi_idf = None
        self._length_norm = None

    def _slot_length_norm(self) -> np.ndarray:
        """``k1 * (1 - b + b * len / avgdl)`` for every slot, cached until N or lengths change.

        One O(slots) pass after an update saves several passes over every
        posting a query reads.
        """
        if self._length_norm is None:
            avgdl = self._total_len / len(self._slot_of)
            doc_len = self._doc_len.view.astype(np.float64)
            self._length_norm = self.k1 * (1.0 - self.b + self.b * doc_len / avgdl)
        return self._length_norm

    def _term_weights(
        self, weight: np.ndarray | float, tf: np.ndarray, norm: np.ndarray
    ) -> np.ndarray:
        """BM25 contributions ``weight * tf * (k1 + 1) / (tf + norm)`` (in place where it can)."""
        tf = tf.astype(np.float64)
        norm += tf  # norm is a fresh gathered copy
        tf *= weight * (self.k1 + 1.0)
        tf /= norm
        return tf

    def _score_postings(
        self, tids: np.ndarray, weights: np.ndarray, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores of every slot holding a query term: walk the query terms' postings."""
        n_slots = len(self._slot_ids)
        norm = self._slot_length_norm()
        slot_parts, weight_parts = [], []
        for tid, weight in zip(tids.tolist(), weights.tolist(), strict=True):
            pairs = np.frombuffer(self._postings[tid], dtype=np.int32).reshape(-1, 2)
            slots = pairs[:, 0]
            slot_parts.append(slots)
            weight_parts.append(self._term_weights(weight, pairs[:, 1], norm.take(slots)))
        all_slots = np.concatenate(slot_parts)
        all_weights = np.concatenate(weight_parts)
        del slot_parts  # views of the postings: release them before the lock is
        touched: np.ndarray
        if len(all_slots) * 8 < n_slots:  # few postings: sort them rather than scan all slots
            touched, inverse = np.unique(all_slots, return_inverse=True)
            scores = np.bincount(inverse, weights=all_weights, minlength=len(touched))
        else:
            dense = np.bincount(all_slots, weights=all_weights, minlength=n_slots)
            touched = np.flatnonzero(dense > 0)  # 10x faster than on the floats
            scores = dense[touched]
        keep = self._alive.view[touched]
        if allowed is not None:
            mask = np.zeros(n_slots, dtype=np.bool_)
            mask[allowed] = True
            keep &= mask[touched]
        return touched[keep], scores[keep]

    def _score_forward(
        self, slots: np.ndarray, tids: np.ndarray, weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores of the given slots only, read from the forward index."""
        counts = self._fwd_count.view[slots]
        entries = _ranges(self._fwd_start.view[slots], counts)
        owner = np.repeat(np.arange(len(slots)), counts)
        entry_tids = self._fwd_tids.view[entries]
        order = np.argsort(tids)
        sorted_tids = tids[order]
        pos = np.minimum(np.searchsorted(sorted_tids, entry_tids), len(sorted_tids) - 1)
        match = sorted_tids[pos] == entry_tids
        owner = owner[match]
        term_weights = weights[order][pos[match]]
        norm = self._slot_length_norm()[slots].take(owner)
        parts = self._term_weights(term_weights, self._fwd_tfs.view[entries][match], norm)
        scores = np.bincount(owner, weights=parts, minlength=len(slots))
        hit = np.bincount(owner, minlength=len(slots)) > 0
        return slots[hit], scores[hit]

    def _top_k(self, slots: np.ndarray, scores: np.ndarray, k: int) -> list[ScoredId]:
        positive = scores > 0
        slots, scores = slots[positive], scores[positive]
        if len(scores) > k:
            best = np.argpartition(scores, len(scores) - k)[-k:]
            slots, scores = slots[best], scores[best]
        chunk_ids = self._slot_ids.view[slots]
        order = np.lexsort((chunk_ids, -scores))  # ties: smaller chunk id first
        return [
            ScoredId(chunk_id=int(c), score=float(s))
            for c, s in zip(chunk_ids[order].tolist(), scores[order].tolist(), strict=True)
        ]

    # ------------------------------------------------------------------ persistence

    def save(self, path: Path | str) -> None:
        """Write the index to one ``.npz`` file atomically.

        The file holds only numbers and a JSON vocabulary (no pickle), and no
        trace of removed chunks (tombstones are left out as in :meth:`compact`).
        """
        with self._lock:
            meta = {
                "format": FORMAT_NAME,
                "version": FORMAT_VERSION,
                "k1": self.k1,
                "b": self.b,
                "idf": self.idf,
                "stem": self.stem,
            }
            state, (pointers, pairs) = self._live_state()
            arrays: dict[str, Any] = {
                "meta": _json_bytes(meta),
                "terms": _json_bytes(state.pop("terms")),
                **state,
                "post_pointers": pointers,
                "post_pairs": pairs,
            }
            atomic_write(path, lambda handle: np.savez(handle, **arrays))
        log.info("bm25 saved path=%s chunks=%d terms=%d", path, len(self), len(self._vocab))

    @classmethod
    def load(cls, path: Path | str) -> BM25Index:
        """Read an index written by :meth:`save`.

        Raises:
            IndexInconsistent: the file is missing, unreadable or of another format.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(bytes(data["meta"]))
                if meta.get("format") != FORMAT_NAME or meta.get("version") != FORMAT_VERSION:
                    raise ValueError(f"format {meta.get('format')!r} v{meta.get('version')!r}")
                state = {
                    "terms": json.loads(bytes(data["terms"])),
                    "df": data["df"],
                    "slot_ids": data["slot_ids"],
                    "doc_len": data["doc_len"],
                    "fwd_count": data["fwd_count"],
                    "fwd_tids": data["fwd_tids"],
                    "fwd_tfs": data["fwd_tfs"],
                }
                postings = (data["post_pointers"], data["post_pairs"])
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise IndexInconsistent(
                f"BM25 index file {path} cannot be read ({exc}); "
                "rebuild it with `rag doctor --repair`"
            ) from exc
        index = cls(k1=meta["k1"], b=meta["b"], idf=meta["idf"], stem=meta["stem"])
        index._restore(state, postings)
        return index


def _json_bytes(value: object) -> np.ndarray:
    return np.frombuffer(json.dumps(value, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)


__all__ = ["BM25Index", "lucene_idf", "okapi_raw_idf", "OKAPI_EPSILON"]
