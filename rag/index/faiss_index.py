"""FAISS vector index: exact ``flat`` or approximate ``hnsw``, keyed by int64 chunk id.

Vectors are compared by inner product; callers pass L2-normalised float32
vectors, so the score is cosine similarity (not checked here: a unit-length
check per add would only repeat the embedder's contract).

* ``flat``: ``IndexIDMap2(IndexFlatIP)``. Exact; a query reads every vector
  (N x dim x 4 bytes), ~6.6 ms at 100k x 384 on one thread. Removal deletes
  the rows (O(N) compaction).
* ``hnsw``: ``IndexIDMap2(IndexHNSWFlat)``. ~0.3 ms at 1M. HNSW cannot delete
  graph nodes, so a removed id becomes a tombstone: its stored vector is
  zeroed at once (the saved file no longer holds it) and searches skip it
  through an ``IDSelector``. When tombstones pass 20% of the nodes the graph
  is rebuilt from the live vectors (a full HNSW build: ~9 s at 100k).

Single queries run with ``search_threads`` OpenMP threads (one by default:
with two, one query is 2.5x slower). faiss and torch share one OpenMP
runtime, so the previous thread count is restored after every search.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import struct
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

import numpy as np

from rag.errors import IndexInconsistent, InvalidInput
from rag.index.atomic import atomic_write
from rag.index.numpy_index import (
    as_id_array,
    as_query,
    check_dimension,
    check_k,
    check_vectors_to_add,
    sorted_contains,
    top_k_exact,
)
from rag.types import ScoredId

if TYPE_CHECKING:
    from rag.settings import IndexSettings

log = logging.getLogger(__name__)

VectorKind = Literal["flat", "hnsw"]

FORMAT_MAGIC = b"RAGFAISS"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sIQ")  # magic, version, length of the JSON metadata
# Rebuild an HNSW graph once this share of its nodes are tombstones: beyond it
# the dead nodes cost recall (zeroed vectors are poor stepping stones) and time.
HNSW_REBUILD_DEAD_SHARE = 0.20
# A filter of at most max(this, 10% of the index) ids is searched exactly by a
# numpy product over just those vectors: cost follows the filter, not the index,
# and HNSW with a very selective filter loses recall.
EXACT_FILTER_MAX = 20_000
# Adds smaller than this (one uploaded document) run on ``search_threads``:
# starting OpenMP threads costs more than it saves there, and on a busy host
# two threads made a 20-vector HNSW insert 3x slower. Bulk adds use every thread.
SMALL_ADD = 1_000


def _faiss() -> Any:
    """The faiss module, imported on first use (its type stubs are incomplete)."""
    return importlib.import_module("faiss")


@contextlib.contextmanager
def omp_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` OpenMP threads, then restore the previous count.

    faiss and torch share the OpenMP runtime, so leaving a changed count
    behind would also change torch's. Not meant for concurrent use from
    several Python threads (the count is process-wide).
    """
    faiss = _faiss()

    previous = faiss.omp_get_max_threads()
    if previous == count:
        yield
        return
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


class FaissVectorIndex:
    """Inner-product search over int64-keyed float32 vectors with FAISS (a ``VectorIndex``).

    Args:
        dim: Vector dimension.
        kind: ``"flat"`` (exact) or ``"hnsw"`` (approximate, fast at large N).
        hnsw_m: HNSW graph degree.
        ef_search: HNSW candidate list length at query time (recall vs speed).
        ef_construction: HNSW candidate list length while inserting.
        search_threads: OpenMP threads for one query.

    Raises:
        InvalidInput: a parameter is out of range.
    """

    def __init__(
        self,
        dim: int,
        kind: VectorKind = "flat",
        *,
        hnsw_m: int = 32,
        ef_search: int = 128,
        ef_construction: int = 80,
        search_threads: int = 1,
    ) -> None:
        self.dim = check_dimension(dim)
        if kind not in ("flat", "hnsw"):
            raise InvalidInput(f"kind must be 'flat' or 'hnsw', got {kind!r}")
        for name, value, low in (
            ("hnsw_m", hnsw_m, 4),
            ("ef_search", ef_search, 1),
            ("ef_construction", ef_construction, 1),
            ("search_threads", search_threads, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidInput(f"{name} must be an integer >= {low}, got {value!r}")
        self.kind: VectorKind = kind
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.ef_construction = ef_construction
        self.search_threads = search_threads
        self._lock = threading.RLock()
        self._index = self._new_faiss_index()
        self._live = np.zeros(0, dtype=np.int64)  # sorted ids that searches may return
        self._tombstones = np.zeros(0, dtype=np.int64)  # sorted; hnsw only
        self._tombstone_filter: tuple[Any, ...] | None = None  # (params, selectors...)

    @classmethod
    def create(cls, dim: int, kind: VectorKind = "flat", **params: Any) -> FaissVectorIndex:
        """An empty index (same arguments as the constructor)."""
        return cls(dim, kind, **params)

    @classmethod
    def from_settings(
        cls, dim: int, settings: IndexSettings, *, expected_size: int = 0
    ) -> FaissVectorIndex:
        """An empty index configured by ``settings``.

        ``vector_kind="auto"`` picks ``hnsw`` when ``expected_size`` exceeds
        ``hnsw_threshold``, else ``flat``.
        """
        kind = settings.vector_kind
        if kind == "auto":
            kind = "hnsw" if expected_size > settings.hnsw_threshold else "flat"
        return cls(
            dim,
            kind,
            hnsw_m=settings.hnsw_m,
            ef_search=settings.hnsw_ef_search,
            ef_construction=settings.hnsw_ef_construction,
            search_threads=settings.search_threads,
        )

    def _new_faiss_index(self) -> Any:
        faiss = _faiss()

        if self.kind == "flat":
            inner = faiss.IndexFlatIP(self.dim)
        else:
            inner = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = self.ef_construction
            inner.hnsw.efSearch = self.ef_search
        return faiss.IndexIDMap2(inner)

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        """Number of live vectors."""
        return len(self._live)

    def ids(self) -> np.ndarray:
        """All live ids, int64, sorted."""
        return self._live.copy()

    @property
    def tombstone_count(self) -> int:
        """Removed ids still present as (zeroed) HNSW nodes."""
        return len(self._tombstones)

    def _stored_ids(self) -> np.ndarray:
        """View of the id of every stored row (valid until the next change)."""
        faiss = _faiss()

        id_map = self._index.id_map
        if id_map.size() == 0:
            return np.zeros(0, dtype=np.int64)
        return faiss.rev_swig_ptr(id_map.data(), id_map.size())

    def _stored_vectors(self) -> np.ndarray:
        """Writable view of every stored row, shape (ntotal, dim) (valid until the next change)."""
        faiss = _faiss()

        inner = faiss.downcast_index(self._index.index)
        storage = inner if self.kind == "flat" else faiss.downcast_index(inner.storage)
        total = storage.ntotal
        if total == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return faiss.rev_swig_ptr(storage.get_xb(), total * self.dim).reshape(total, self.dim)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors of ``ids``, shape (len(ids), dim), float32.

        Raises:
            InvalidInput: an id is not held (or was removed).
        """
        ids = as_id_array(ids)
        with self._lock:
            found = sorted_contains(self._live, ids)
            if not found.all():
                raise InvalidInput(f"ids {ids[~found][:5].tolist()} are not in the vector index")
            if len(ids) == 0:
                return np.zeros((0, self.dim), dtype=np.float32)
            return self._index.reconstruct_batch(ids)

    def _live_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every live row, copied, in storage order."""
        stored = self._stored_ids()
        rows = np.flatnonzero(~sorted_contains(self._tombstones, stored))
        return stored[rows].copy(), self._stored_vectors()[rows].copy()

    # ------------------------------------------------------------------ writing

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors (shape (n, dim), L2-normalised by the caller) under int64 ids.

        Raises:
            InvalidInput: wrong shape, non-finite values, or an id repeated or
                already held.
        """
        with self._lock:
            ids, vectors = check_vectors_to_add(ids, vectors, self.dim, self._live)
            if len(ids) == 0:
                return
            if sorted_contains(self._tombstones, ids).any():
                # IndexIDMap2 keys rows by id: a re-used id would also match its
                # tombstone, so drop the tombstones first.
                self._rebuild_in_place()
            if len(ids) < SMALL_ADD:
                with omp_threads(self.search_threads):
                    self._index.add_with_ids(vectors, ids)
            else:
                self._index.add_with_ids(vectors, ids)
            self._live = np.sort(np.concatenate((self._live, ids)), kind="stable")

    def remove(self, ids: Iterable[int]) -> int:
        """Remove ids (unknown ids are ignored); returns how many were removed."""
        faiss = _faiss()

        with self._lock:
            wanted = np.unique(as_id_array(ids))
            doomed = wanted[sorted_contains(self._live, wanted)]
            if len(doomed) == 0:
                return 0
            if self.kind == "flat":
                selector = faiss.IDSelectorBatch(doomed)
                removed = int(self._index.remove_ids(selector))
                if removed != len(doomed):  # pragma: no cover - would be a faiss bug
                    raise IndexInconsistent(
                        f"faiss removed {removed} of {len(doomed)} ids; rebuild the index"
                    )
            else:
                rows = np.flatnonzero(np.isin(self._stored_ids(), doomed))
                self._stored_vectors()[rows] = 0.0  # the file no longer holds them
                self._tombstones = np.union1d(self._tombstones, doomed)
                self._tombstone_filter = None
            self._live = self._live[~sorted_contains(doomed, self._live)]
            if len(self._tombstones) > HNSW_REBUILD_DEAD_SHARE * self._index.ntotal:
                self._rebuild_in_place()
            log.debug("faiss removed ids=%d kind=%s", len(doomed), self.kind)
            return len(doomed)

    def rebuild(self, kind: VectorKind | None = None) -> FaissVectorIndex:
        """A new index of ``kind`` (default: the same) holding the live vectors.

        Used when a collection crosses ``hnsw_threshold`` and to drop tombstones.
        """
        with self._lock:
            fresh = FaissVectorIndex(
                self.dim,
                kind or self.kind,
                hnsw_m=self.hnsw_m,
                ef_search=self.ef_search,
                ef_construction=self.ef_construction,
                search_threads=self.search_threads,
            )
            ids, vectors = self._live_rows()
            fresh.add(ids, vectors)
            return fresh

    def _rebuild_in_place(self) -> None:
        dead = len(self._tombstones)
        fresh = self.rebuild()
        self._index, self._live = fresh._index, fresh._live
        self._tombstones = np.zeros(0, dtype=np.int64)
        self._tombstone_filter = None
        log.info("faiss rebuilt kind=%s live=%d dropped_tombstones=%d", self.kind, len(self), dead)

    # ------------------------------------------------------------------ search

    def search(
        self, query: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> list[ScoredId]:
        """Top ``k`` ids by inner product, best first; only ``allowed_ids`` when given.

        Raises:
            InvalidInput: ``k`` < 1 or the query has the wrong dimension.
        """
        k = check_k(k)
        q = as_query(query, self.dim)
        with self._lock:
            if len(self._live) == 0:
                return []
            if allowed_ids is None:
                return self._search_faiss(q, k, self._tombstone_params())
            allowed = np.unique(as_id_array(allowed_ids))
            allowed = allowed[sorted_contains(self._live, allowed)]
            if len(allowed) == 0:
                return []
            if len(allowed) <= max(EXACT_FILTER_MAX, len(self._live) // 10):
                vectors = self._index.reconstruct_batch(allowed)
                return top_k_exact(allowed, vectors @ q[0], k)
            return self._search_faiss(q, k, self._selector_params(allowed))

    def _search_faiss(
        self, q: np.ndarray, k: int, params: tuple[Any, ...] | None
    ) -> list[ScoredId]:
        k = min(k, len(self._live))
        with omp_threads(self.search_threads):
            if params is None:
                scores, labels = self._index.search(q, k)
            else:
                # params[1:] keeps the selectors alive while faiss reads them
                scores, labels = self._index.search(q, k, params=params[0])
        found = labels[0] >= 0
        return [
            ScoredId(chunk_id=int(i), score=float(s))
            for i, s in zip(labels[0][found].tolist(), scores[0][found].tolist(), strict=True)
        ]

    def _search_parameters(self, selector: Any | None) -> Any:
        faiss = _faiss()
        if self.kind == "hnsw":
            if selector is None:
                return faiss.SearchParametersHNSW(efSearch=self.ef_search)
            return faiss.SearchParametersHNSW(efSearch=self.ef_search, sel=selector)
        return faiss.SearchParameters(sel=selector)

    def _selector_params(self, allowed: np.ndarray) -> tuple[Any, ...]:
        selector = _faiss().IDSelectorBatch(allowed)
        return (self._search_parameters(selector), selector)

    def _tombstone_params(self) -> tuple[Any, ...] | None:
        """Parameters of an unfiltered search: ``ef_search`` and a filter skipping tombstones.

        The filter is cached until the tombstones or ``ef_search`` change.
        """
        if self.kind == "flat":
            return None  # flat deletes for real: nothing to skip
        if len(self._tombstones) == 0:
            return (self._search_parameters(None),)
        cached = self._tombstone_filter
        if cached is None or cached[0].efSearch != self.ef_search:
            faiss = _faiss()
            dead = faiss.IDSelectorBatch(self._tombstones)
            alive = faiss.IDSelectorNot(dead)
            self._tombstone_filter = (self._search_parameters(alive), alive, dead)
        return self._tombstone_filter

    # ------------------------------------------------------------------ persistence

    def save(self, path: Path | str) -> None:
        """Write the index, its settings and its tombstones to one file, atomically.

        Layout: magic ``RAGFAISS``, version, JSON metadata, tombstone ids
        (int64), then the FAISS index streamed by ``faiss.write_index`` (no
        full in-memory copy).
        """
        faiss = _faiss()

        with self._lock:
            meta = json.dumps(
                {
                    "kind": self.kind,
                    "dim": self.dim,
                    "hnsw_m": self.hnsw_m,
                    "ef_search": self.ef_search,
                    "ef_construction": self.ef_construction,
                    "search_threads": self.search_threads,
                    "tombstones": len(self._tombstones),
                }
            ).encode()

            def write(handle: BinaryIO) -> None:
                handle.write(_HEADER.pack(FORMAT_MAGIC, FORMAT_VERSION, len(meta)))
                handle.write(meta)
                handle.write(self._tombstones.astype("<i8").tobytes())
                writer = faiss.PyCallbackIOWriter(handle.write)
                faiss.write_index(self._index, writer)
                del writer  # flushes its buffer into handle

            atomic_write(path, write)
        log.info("faiss saved path=%s kind=%s live=%d", path, self.kind, len(self))

    @classmethod
    def load(cls, path: Path | str) -> FaissVectorIndex:
        """Read an index written by :meth:`save`.

        Raises:
            IndexInconsistent: the file is missing, unreadable or of another format.
        """
        faiss = _faiss()

        try:
            with open(path, "rb") as handle:
                magic, version, meta_len = _HEADER.unpack(handle.read(_HEADER.size))
                if magic != FORMAT_MAGIC or version != FORMAT_VERSION:
                    raise ValueError(f"not a v{FORMAT_VERSION} {FORMAT_MAGIC.decode()} file")
                meta = json.loads(handle.read(meta_len))
                n_dead = int(meta["tombstones"])
                tombstones = np.frombuffer(handle.read(8 * n_dead), dtype="<i8").astype(np.int64)
                if len(tombstones) != n_dead:
                    raise ValueError("file is truncated")
                faiss_index = faiss.read_index(faiss.PyCallbackIOReader(handle.read))
        except (OSError, ValueError, KeyError, RuntimeError, struct.error) as exc:
            raise IndexInconsistent(
                f"vector index file {path} cannot be read ({exc}); "
                "rebuild it with `rag doctor --repair`"
            ) from exc
        index = cls(
            meta["dim"],
            meta["kind"],
            hnsw_m=meta["hnsw_m"],
            ef_search=meta["ef_search"],
            ef_construction=meta["ef_construction"],
            search_threads=meta["search_threads"],
        )
        if not isinstance(faiss_index, faiss.IndexIDMap2) or faiss_index.d != index.dim:
            raise IndexInconsistent(
                f"vector index file {path} holds a {type(faiss_index).__name__} of dimension "
                f"{faiss_index.d}, expected IndexIDMap2 of {index.dim}; rebuild it"
            )
        index._index = faiss_index
        index._tombstones = np.sort(tombstones)
        stored = np.sort(index._stored_ids())
        index._live = stored[~sorted_contains(index._tombstones, stored)]
        return index
