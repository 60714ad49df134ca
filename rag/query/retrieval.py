"""Hybrid retrieval: FAISS and BM25 candidates fused by rank (or normalised score).

A question in a language the embedder does not cover (a Chinese question with
the English-only bundled model) is answered by BM25 alone in hybrid mode. On
CMRC 2018 trial the English model scores nDCG@10 0.20 to BM25's 0.98, and
fusing it in cost 0.04 (weighted, dense weight 0.5) to 0.25 (RRF); a small
dense weight (0.05 to 0.3) moved nDCG@10 by under 0.001, so the question is
not embedded at all (README, evaluation).

Each hit carries its fused score and its rank and score in each retriever, so
a user can see why it was chosen. Filters (collections, documents, pages) are
resolved through SQL indexes to chunk ids, and the indexes then score only
those ids, so asking one PDF never scans the whole collection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from rag.errors import InvalidInput
from rag.knowledge_base import KnowledgeBase
from rag.protocols import Embedder
from rag.query.fusion import FusedCandidate, fuse_hits
from rag.settings import RetrievalSettings
from rag.text.language import ANY_LANGUAGE, covers_language
from rag.text.normalize import cjk_ratio
from rag.types import Hit, ScoredId

log = logging.getLogger(__name__)

Mode = Literal["hybrid", "dense", "sparse"]


@dataclass(frozen=True)
class RetrievalFilter:
    """Which part of the knowledge base to search."""

    collections: tuple[str, ...] = ()
    document_ids: tuple[str, ...] = ()
    pages: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.pages is not None:
            first, last = self.pages
            if first < 1 or last < first:
                raise InvalidInput(f"page range must be 1 <= first <= last, got {self.pages}")


@dataclass(frozen=True)
class RetrievalResult:
    """Hits best first, plus what the gate and the timings saw."""

    hits: tuple[Hit, ...]
    relevant: bool
    best_dense: float
    best_sparse: float
    timings: dict[str, float] = field(default_factory=dict)


def _merge(lists: Sequence[list[ScoredId]], k: int) -> list[ScoredId]:
    merged = [hit for part in lists for hit in part]
    merged.sort(key=lambda h: (-h.score, h.chunk_id))
    return merged[:k]


class HybridRetriever:
    """Dense + sparse retrieval with rank fusion over one or more collections.

    Args:
        kb: The knowledge base.
        embedder: Encodes the query (same model as the chunks).
        settings: Candidates per retriever, fusion method, thresholds.
        reranker: Optional cross-encoder applied to the fused list.
    """

    def __init__(
        self,
        kb: KnowledgeBase,
        embedder: Embedder,
        settings: RetrievalSettings,
        reranker: object | None = None,
    ) -> None:
        self.kb = kb
        self.embedder = embedder
        self.settings = settings
        self.reranker = reranker
        # Embedders written before the attribute existed are taken to cover every language.
        self.languages: frozenset[str] = getattr(
            embedder, "languages", frozenset({ANY_LANGUAGE})
        )

    def dense_covers(self, query: str) -> bool:
        """Whether the embedder handles ``query``'s language (else hybrid is BM25 alone)."""
        return covers_language(self.languages, query)

    def retrieve(
        self,
        query: str,
        *,
        sparse_query: str | None = None,
        where: RetrievalFilter | None = None,
        top_k: int | None = None,
        mode: Mode = "hybrid",
        candidates: int | None = None,
        fusion: str | None = None,
        query_vector: np.ndarray | None = None,
    ) -> RetrievalResult:
        """Retrieve the top chunks for ``query``.

        Args:
            query: Text embedded for dense search.
            sparse_query: Text for BM25 (defaults to ``query``).
            where: Collections, documents and pages to search.
            top_k: Hits to return (default from settings).
            mode: ``hybrid``, ``dense`` or ``sparse``.
            candidates: Candidates per retriever before fusion.
            fusion: ``rrf`` or ``weighted`` (default from settings).
            query_vector: A precomputed query embedding (batch evaluation).
        """
        top_k = top_k or self.settings.top_k
        if not 1 <= top_k <= 1000:
            raise InvalidInput(f"top_k must be between 1 and 1000, got {top_k}")
        fused, best_dense, best_sparse, timings = self.candidates(
            query,
            sparse_query=sparse_query,
            where=where,
            mode=mode,
            candidates=max(candidates or self.settings.candidates, top_k),
            fusion=fusion,
            query_vector=query_vector,
        )
        relevant = self._clears_threshold(mode, best_dense, best_sparse, cjk_ratio(query) > 0.3)
        t0 = time.perf_counter()
        hits = self._to_hits(
            fused, top_k if self.reranker is None else max(top_k, self.settings.rerank_candidates)
        )
        timings["fetch"] = time.perf_counter() - t0
        if self.reranker is not None and hits:
            t0 = time.perf_counter()
            hits = self.reranker.rerank(query, hits, top_k)  # type: ignore[attr-defined]
            timings["rerank"] = time.perf_counter() - t0
        return RetrievalResult(
            hits=tuple(hits[:top_k]),
            relevant=relevant,
            best_dense=best_dense,
            best_sparse=best_sparse,
            timings=timings,
        )

    def candidates(
        self,
        query: str,
        *,
        sparse_query: str | None = None,
        where: RetrievalFilter | None = None,
        mode: Mode = "hybrid",
        candidates: int | None = None,
        fusion: str | None = None,
        query_vector: np.ndarray | None = None,
    ) -> tuple[list[FusedCandidate], float, float, dict[str, float]]:
        """Fused candidates (chunk ids only), best cosine, best BM25 share of its ceiling, timings.

        In ``hybrid`` mode a query the embedder does not cover
        (:meth:`dense_covers`) is not embedded: its candidates are BM25's,
        without dense ranks or scores, and the best cosine is 0. Evaluation
        uses this directly; :meth:`retrieve` adds the chunk rows.
        """
        if mode not in ("hybrid", "dense", "sparse"):
            raise InvalidInput(f"mode must be hybrid, dense or sparse, got {mode!r}")
        candidates = candidates or self.settings.candidates
        where = where or RetrievalFilter()
        timings: dict[str, float] = {}
        collection_ids = self.kb.collection_ids(list(where.collections) or None)
        t0 = time.perf_counter()
        allowed = {
            cid: self.kb.allowed_chunk_ids(cid, where.document_ids or None, where.pages)
            for cid in collection_ids
        }
        timings["filter"] = time.perf_counter() - t0
        dense: list[ScoredId] = []
        sparse: list[ScoredId] = []
        best_share = 0.0
        use_dense = mode == "dense" or (mode == "hybrid" and self.dense_covers(query))
        if mode == "hybrid" and not use_dense:
            log.debug("dense skipped languages=%s", ",".join(sorted(self.languages)))
        if use_dense:
            t0 = time.perf_counter()
            vector = query_vector if query_vector is not None else self.embedder.embed_query(query)
            timings["embed"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            dense = _merge(
                [self.kb.search_dense(c, vector, candidates, allowed[c]) for c in collection_ids],
                candidates,
            )
            timings["dense"] = time.perf_counter() - t0
        if mode in ("hybrid", "sparse"):
            t0 = time.perf_counter()
            text = sparse_query if sparse_query is not None else query
            per_collection = [
                self.kb.search_sparse(c, text, candidates, allowed[c]) for c in collection_ids
            ]
            sparse = _merge(per_collection, candidates)
            timings["sparse"] = time.perf_counter() - t0
            best_share = max(
                (
                    self.kb.sparse_share(c, text, hits[0].score)
                    for c, hits in zip(collection_ids, per_collection, strict=True)
                    if hits
                ),
                default=0.0,
            )
        t0 = time.perf_counter()
        fused = fuse_hits(
            dense,
            sparse,
            method=fusion or self.settings.fusion,
            rrf_k=self.settings.rrf_k,
            # BM25 alone: its normalised scores in full, not scaled by 1 - dense_weight.
            dense_weight=self.settings.dense_weight if use_dense else 0.0,
        )
        timings["fusion"] = time.perf_counter() - t0
        best_dense = dense[0].score if dense else 0.0
        return fused, best_dense, best_share, timings

    def _clears_threshold(
        self, mode: Mode, best_dense: float, best_sparse: float, cjk: bool = False
    ) -> bool:
        """Calibrated 'not found': some candidate must look relevant to some retriever.

        ``best_sparse`` is the best BM25 score as a share of the query's ceiling
        (all terms matched), which unlike raw BM25 does not grow with the
        query's length or the corpus; see ``eval/calibrate.py`` for the numbers.
        """
        s = self.settings
        if cjk:
            # An English-only embedder gives unrelated Chinese texts cosines as high as
            # related ones (measured: 0.47 off-topic vs 0.27 answerable), so by default
            # Chinese questions are gated on BM25 alone. CMRC 2018 trial (eval/calibrate.py):
            # shares 0.05/0.08/0.12/0.15 keep 99.7/99.7/99.7/99.6% of its 1,002 questions
            # and refuse 10/15/30/50% of 20 off-topic ones.
            dense_ok = s.dense_gate_cjk and best_dense >= s.min_dense_score
            sparse_ok = best_sparse >= s.min_sparse_share_cjk
        else:
            dense_ok = best_dense >= s.min_dense_score
            sparse_ok = best_sparse >= s.min_sparse_share
        if mode == "dense":
            return dense_ok
        if mode == "sparse":
            return sparse_ok
        return dense_ok or sparse_ok

    def _to_hits(self, fused: Sequence[FusedCandidate], limit: int) -> list[Hit]:
        """Look up chunk rows for the best candidates, skipping ids no longer stored."""
        hits: list[Hit] = []
        position = 0
        while len(hits) < limit and position < len(fused):
            batch = fused[position : position + limit * 2]
            position += len(batch)
            rows = self.kb.chunks_by_ids(c.chunk_id for c in batch)
            for cand in batch:
                found = rows.get(cand.chunk_id)
                if found is None:
                    continue
                chunk, filename, collection = found
                hits.append(
                    Hit(
                        chunk_id=chunk.id,
                        document_id=chunk.document_id,
                        collection=collection,
                        filename=filename,
                        ordinal=chunk.ordinal,
                        text=chunk.text,
                        page_start=chunk.page_start,
                        page_end=chunk.page_end,
                        page_breaks=chunk.page_breaks,
                        score=cand.score,
                        dense_rank=cand.dense_rank,
                        sparse_rank=cand.sparse_rank,
                        dense_score=cand.dense_score,
                        sparse_score=cand.sparse_score,
                    )
                )
                if len(hits) >= limit:
                    break
        return hits

    def expand_neighbours(self, hits: Sequence[Hit]) -> list[Hit]:
        """The hits, then each hit's previous and next chunks (deduplicated).

        Neighbours come after every retrieved hit, so the prompt budget, which
        drops sources from the end, drops them first.
        """
        seen = {h.chunk_id for h in hits}
        out: list[Hit] = list(hits)
        for hit in hits:
            for chunk in sorted(
                self.kb.neighbour_chunks(hit.document_id, (hit.ordinal - 1, hit.ordinal + 1)),
                key=lambda c: c.ordinal,
            ):
                if chunk.id in seen:
                    continue
                seen.add(chunk.id)
                out.append(
                    replace(
                        hit,
                        chunk_id=chunk.id,
                        ordinal=chunk.ordinal,
                        text=chunk.text,
                        page_start=chunk.page_start,
                        page_end=chunk.page_end,
                        page_breaks=chunk.page_breaks,
                        score=hit.score * 0.99,
                        dense_rank=None,
                        sparse_rank=None,
                        dense_score=None,
                        sparse_score=None,
                    )
                )
        return out
