"""Hybrid retrieval: FAISS and BM25 candidates fused by rank (or normalised score).

A question in a language the embedder does not cover (a Chinese question with
the English-only bundled model) is answered by BM25 alone in hybrid mode. On
CMRC 2018 trial the English model scores nDCG@10 0.20 to BM25's 0.98, and
fusing it in cost 0.04 (weighted, dense weight 0.5) to 0.25 (RRF); a small
dense weight (0.05 to 0.3) moved nDCG@10 by under 0.001, so the question is
not embedded at all (README, evaluation).

Each collection records the embedding model its vectors were made with, and
the question is embedded with that model. Collections of one model are
searched together, as one; when the collections asked use several models,
each model's collections are fused on their own (cosines of different models
are not comparable) and the fused lists are merged by fused score, which is
on one scale for every model: a rank share in RRF, a min-max share in
weighted fusion.

Each hit carries its fused score and its rank and score in each retriever, so
a user can see why it was chosen. Filters (collections, documents, pages) are
resolved through SQL indexes to chunk ids, and the indexes then score only
those ids, so asking one PDF never scans the whole collection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from rag.embedding import EmbedderRegistry
from rag.errors import EmbeddingMismatch, InvalidInput
from rag.knowledge_base import KnowledgeBase
from rag.protocols import Embedder, EmbedderProvider, Reranker
from rag.query.fusion import FusedCandidate, fuse_hits
from rag.settings import DenseGate, RetrievalSettings
from rag.text.language import covers_language
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


class _KeywordLeg:
    """The BM25 leg of one model's collections, run here or in a thread beside the dense leg.

    :meth:`result` gives (merged hits, best BM25 share of its ceiling, seconds
    spent), running the search now unless :meth:`start` already has it going;
    an error in the thread is raised there.
    """

    def __init__(
        self,
        kb: KnowledgeBase,
        collection_ids: list[int],
        allowed: dict[int, np.ndarray | None],
        text: str,
        candidates: int,
    ) -> None:
        self._kb, self._ids, self._allowed = kb, collection_ids, allowed
        self._text, self._candidates = text, candidates
        self._thread: threading.Thread | None = None
        self._outcome: tuple[list[ScoredId], float, float] | BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._capture, name="bm25-leg", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def result(self) -> tuple[list[ScoredId], float, float]:
        if self._thread is None:
            return self._search()
        self._thread.join()
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        assert self._outcome is not None
        return self._outcome

    def _capture(self) -> None:
        try:
            self._outcome = self._search()
        except BaseException as exc:  # handed to the caller's thread by result()
            self._outcome = exc

    def _search(self) -> tuple[list[ScoredId], float, float]:
        t0 = time.perf_counter()
        per_collection = [
            self._kb.search_sparse(c, self._text, self._candidates, self._allowed[c])
            for c in self._ids
        ]
        best_share = max(
            (
                self._kb.sparse_share(c, self._text, hits[0].score)
                for c, hits in zip(self._ids, per_collection, strict=True)
                if hits
            ),
            default=0.0,
        )
        return _merge(per_collection, self._candidates), best_share, time.perf_counter() - t0


def _merge(lists: Sequence[list[ScoredId]], k: int) -> list[ScoredId]:
    merged = [hit for part in lists for hit in part]
    merged.sort(key=lambda h: (-h.score, h.chunk_id))
    return merged[:k]


@dataclass(frozen=True)
class _Gathered:
    """Fused candidates with what the gate needs: the best cosine under each model."""

    fused: list[FusedCandidate]
    best_dense_by_model: dict[str, float]
    best_share: float
    timings: dict[str, float]

    @property
    def best_dense(self) -> float:
        return max(self.best_dense_by_model.values(), default=0.0)


def _only(embedder: Embedder) -> EmbedderRegistry:
    """A provider of one embedder: collections of any other model are a mismatch."""

    def refuse(model: str) -> Embedder:
        raise EmbeddingMismatch(
            f"a collection holds vectors of {model!r} but this retriever has only "
            f"{embedder.name!r}; build it with the services' embedder registry"
        )

    return EmbedderRegistry(embedder, refuse)


class HybridRetriever:
    """Dense + sparse retrieval with rank fusion over one or more collections.

    Args:
        kb: The knowledge base.
        embedders: The embedder of each collection's recorded model; a single
            embedder serves collections of its own model only.
        settings: Candidates per retriever, fusion method, thresholds.
        reranker: Optional cross-encoder applied to the fused list.
    """

    def __init__(
        self,
        kb: KnowledgeBase,
        embedders: EmbedderProvider | Embedder,
        settings: RetrievalSettings,
        reranker: Reranker | None = None,
    ) -> None:
        self.kb = kb
        # A provider is told apart by its two attributes; an embedder's Protocol
        # check would evaluate (and so load) its lazy properties.
        self.embedders: EmbedderProvider = (
            embedders if isinstance(embedders, EmbedderProvider) else _only(embedders)
        )
        self.settings = settings
        self.reranker = reranker

    @property
    def embedder(self) -> Embedder:
        """The configured model's embedder."""
        return self.embedders.default

    @property
    def languages(self) -> frozenset[str]:
        """Languages of the configured model's embedder."""
        return self.embedder.languages

    def dense_covers(self, query: str, model: str = "") -> bool:
        """Whether ``model``'s embedder handles ``query``'s language (else hybrid is BM25 alone)."""
        return covers_language(self.embedders.get(model).languages, query)

    def dense_gate(self, model: str) -> DenseGate:
        """The cosine gate for ``model``: its own from ``dense_gates``, else the general one."""
        s = self.settings
        name = self.embedders.get(model).name if model else self.embedder.name
        cjk = s.min_dense_score if s.dense_gate_cjk else None
        return s.dense_gates.get(name, DenseGate(min_score=s.min_dense_score, min_score_cjk=cjk))

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
        gathered = self._gather(
            query,
            sparse_query=sparse_query,
            where=where,
            mode=mode,
            candidates=max(candidates or self.settings.candidates, top_k),
            fusion=fusion,
            query_vector=query_vector,
        )
        fused, best_sparse, timings = gathered.fused, gathered.best_share, gathered.timings
        relevant = self._clears_threshold(
            mode, gathered.best_dense_by_model, best_sparse, cjk_ratio(query) > 0.3
        )
        t0 = time.perf_counter()
        hits = self._to_hits(
            fused, top_k if self.reranker is None else max(top_k, self.settings.rerank_candidates)
        )
        timings["fetch"] = time.perf_counter() - t0
        if self.reranker is not None and hits:
            t0 = time.perf_counter()
            hits = self.reranker.rerank(query, hits, top_k)
            timings["rerank"] = time.perf_counter() - t0
        return RetrievalResult(
            hits=tuple(hits[:top_k]),
            relevant=relevant,
            best_dense=gathered.best_dense,
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
        gathered = self._gather(
            query,
            sparse_query=sparse_query,
            where=where,
            mode=mode,
            candidates=candidates,
            fusion=fusion,
            query_vector=query_vector,
        )
        return gathered.fused, gathered.best_dense, gathered.best_share, gathered.timings

    def _gather(
        self,
        query: str,
        *,
        sparse_query: str | None,
        where: RetrievalFilter | None,
        mode: Mode,
        candidates: int | None,
        fusion: str | None,
        query_vector: np.ndarray | None,
    ) -> _Gathered:
        """Search every collection asked, grouped by recorded model, and fuse (module docstring).

        Raises:
            InvalidInput: A bad mode, or a precomputed ``query_vector`` for
                collections of several models.
            EmbeddingMismatch: A collection's vectors do not fit its recorded model.
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
        recorded = self.kb.collection_models(collection_ids)
        groups: dict[str, list[int]] = {}
        for cid in collection_ids:
            model = recorded.get(cid, ("", 0))[0] or self.embedder.name
            groups.setdefault(model, []).append(cid)
        if query_vector is not None and len(groups) > 1 and mode != "sparse":
            raise InvalidInput(
                "a precomputed query vector fits one embedding model, but the collections "
                f"asked use {len(groups)}: {', '.join(sorted(groups))}"
            )
        text = sparse_query if sparse_query is not None else query
        fused_lists: list[list[FusedCandidate]] = []
        best_dense: dict[str, float] = {}
        best_share = 0.0
        for model, ids in groups.items():
            fused, best, share = self._search_group(
                model, ids, allowed, query, text, mode, candidates, fusion, query_vector, timings
            )
            fused_lists.append(fused)
            if best is not None:
                best_dense[model] = best
            best_share = max(best_share, share)
        t0 = time.perf_counter()
        if len(fused_lists) == 1:
            merged = fused_lists[0]
        else:
            merged = sorted(
                (c for part in fused_lists for c in part), key=lambda c: (-c.score, c.chunk_id)
            )
        timings["fusion"] = timings.get("fusion", 0.0) + time.perf_counter() - t0
        return _Gathered(merged, best_dense, best_share, timings)

    def _search_group(
        self,
        model: str,
        collection_ids: list[int],
        allowed: dict[int, np.ndarray | None],
        query: str,
        text: str,
        mode: Mode,
        candidates: int,
        fusion: str | None,
        query_vector: np.ndarray | None,
        timings: dict[str, float],
    ) -> tuple[list[FusedCandidate], float | None, float]:
        """Dense and BM25 search of the collections of one model, fused.

        Returns:
            (fused candidates, best cosine or None when dense was not used, best BM25 share).
        """
        dense: list[ScoredId] = []
        sparse: list[ScoredId] = []
        best_share = 0.0
        use_dense = mode == "dense"
        embedder: Embedder | None = None
        if mode == "hybrid":
            embedder = self.embedders.get(model)
            use_dense = covers_language(embedder.languages, query)
            if not use_dense:
                log.debug(
                    "dense skipped model=%s languages=%s",
                    model,
                    ",".join(sorted(embedder.languages)),
                )
        keywords: _KeywordLeg | None = None
        if mode in ("hybrid", "sparse"):
            keywords = _KeywordLeg(self.kb, collection_ids, allowed, text, candidates)
            if use_dense and self.kb.searches_off_process:
                # The database searches keywords while this thread embeds the query and
                # runs the dense search: the two legs overlap instead of adding up.
                keywords.start()
        try:
            if use_dense:
                t0 = time.perf_counter()
                if query_vector is not None:
                    vector = query_vector
                else:
                    embedder = embedder or self.embedders.get(model)
                    vector = embedder.embed_query(query)
                timings["embed"] = timings.get("embed", 0.0) + time.perf_counter() - t0
                t0 = time.perf_counter()
                dense = _merge(
                    [
                        self.kb.search_dense(c, vector, candidates, allowed[c])
                        for c in collection_ids
                    ],
                    candidates,
                )
                timings["dense"] = timings.get("dense", 0.0) + time.perf_counter() - t0
        except BaseException:
            if keywords is not None:
                keywords.wait()  # never leave the thread behind the error
            raise
        if keywords is not None:
            sparse, best_share, seconds = keywords.result()
            timings["sparse"] = timings.get("sparse", 0.0) + seconds
        t0 = time.perf_counter()
        fused = fuse_hits(
            dense,
            sparse,
            method=fusion or self.settings.fusion,
            rrf_k=self.settings.rrf_k,
            # BM25 alone: its normalised scores in full, not scaled by 1 - dense_weight.
            dense_weight=self.settings.dense_weight if use_dense else 0.0,
        )
        timings["fusion"] = timings.get("fusion", 0.0) + time.perf_counter() - t0
        best = (dense[0].score if dense else 0.0) if use_dense else None
        return fused, best, best_share

    def _clears_threshold(
        self,
        mode: Mode,
        best_dense: dict[str, float],
        best_sparse: float,
        cjk: bool = False,
    ) -> bool:
        """Calibrated 'not found': some candidate must look relevant to some retriever.

        ``best_dense`` is the best cosine under each model consulted, judged
        by that model's gate (:meth:`dense_gate`). ``best_sparse`` is the best
        BM25 score as a share of the query's ceiling (all terms matched), which
        unlike raw BM25 does not grow with the query's length or the corpus;
        see ``eval/calibrate.py`` for the numbers.
        """
        s = self.settings
        gates = {model: self.dense_gate(model) for model in best_dense}
        if cjk:
            # An English-only embedder gives unrelated Chinese texts cosines as high as
            # related ones (measured: 0.47 off-topic vs 0.27 answerable), so by default
            # Chinese questions are gated on BM25 alone. CMRC 2018 trial (eval/calibrate.py):
            # shares 0.05/0.08/0.12/0.15 keep 99.7/99.7/99.7/99.6% of its 1,002 questions
            # and refuse 10/15/30/50% of 20 off-topic ones.
            # A multilingual model's gate (dense_gates) has a Chinese threshold.
            dense_ok = any(
                (threshold := gates[m].min_score_cjk) is not None and best >= threshold
                for m, best in best_dense.items()
            )
            sparse_ok = best_sparse >= s.min_sparse_share_cjk
        else:
            dense_ok = any(best >= gates[m].min_score for m, best in best_dense.items())
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
