"""Brute-force vector index in numpy: the exact reference every ``VectorIndex`` is tested against.

Also holds the argument checks and the exact top-k that the FAISS index shares,
so both implementations reject the same inputs with the same messages.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import IndexInconsistent, InvalidInput
from rag.index.atomic import atomic_write
from rag.types import ScoredId

log = logging.getLogger(__name__)

FORMAT_NAME = "rag-numpy-vectors"
FORMAT_VERSION = 1


def check_dimension(dim: int) -> int:
    """``dim`` as an int, or InvalidInput when it is not a positive integer."""
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1:
        raise InvalidInput(f"dim must be a positive integer, got {dim!r}")
    return int(dim)


def check_k(k: int) -> int:
    """``k`` as an int, or InvalidInput when it is below 1."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InvalidInput(f"k must be at least 1, got {k!r}")
    return int(k)


def as_id_array(ids: Iterable[int] | np.ndarray) -> np.ndarray:
    """Ids as a 1-D int64 array."""
    if isinstance(ids, np.ndarray):
        return ids.astype(np.int64, copy=False).ravel()
    return np.fromiter((int(i) for i in ids), dtype=np.int64)


def check_vectors_to_add(
    ids: np.ndarray, vectors: np.ndarray, dim: int, held_sorted: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Validate an ``add`` call; returns (int64 ids, C-contiguous float32 vectors).

    Vectors are expected L2-normalised (inner product is then cosine
    similarity); that is the caller's job and is not checked here.

    Raises:
        InvalidInput: wrong shape or dimension, non-finite values, ids repeated
            within the call or already held (``held_sorted`` is sorted).
    """
    ids = as_id_array(ids)
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim == 1 and len(ids) == 1:
        vectors = vectors.reshape(1, -1)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise InvalidInput(
            f"vectors must have shape (n, {dim}), got {vectors.shape}; "
            "embed with the model this index was created for"
        )
    if len(ids) != len(vectors):
        raise InvalidInput(f"got {len(ids)} ids for {len(vectors)} vectors; pass one id per vector")
    if len(ids) == 0:
        return ids, np.zeros((0, dim), dtype=np.float32)
    unique = np.unique(ids)
    if len(unique) != len(ids):
        values, counts = np.unique(ids, return_counts=True)
        raise InvalidInput(
            f"ids repeat within one add: {values[counts > 1][:5].tolist()}; ids must be unique"
        )
    present = unique[sorted_contains(held_sorted, unique)]
    if len(present):
        raise InvalidInput(
            f"ids {present[:5].tolist()} are already in the vector index; remove them first"
        )
    if not np.isfinite(vectors).all():
        raise InvalidInput("vectors contain NaN or infinity; check the embedder output")
    return ids, np.ascontiguousarray(vectors)


def as_query(query: np.ndarray, dim: int) -> np.ndarray:
    """The query as a (1, dim) C-contiguous float32 array.

    Raises:
        InvalidInput: the query does not hold exactly ``dim`` values.
    """
    query = np.asarray(query, dtype=np.float32)
    if query.size != dim or query.ndim > 2:
        raise InvalidInput(
            f"query must be a vector of {dim} values, got shape {query.shape}; "
            "embed it with the model this index was created for"
        )
    return np.ascontiguousarray(query.reshape(1, dim))


def sorted_contains(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Boolean mask: which ``values`` occur in the sorted array ``sorted_values``."""
    if len(sorted_values) == 0:
        return np.zeros(len(values), dtype=np.bool_)
    pos = np.searchsorted(sorted_values, values)
    pos = np.minimum(pos, len(sorted_values) - 1)
    return sorted_values[pos] == values


def top_k_exact(ids: np.ndarray, scores: np.ndarray, k: int) -> list[ScoredId]:
    """The ``k`` best (id, score) pairs, best first; ties go to the smaller id.

    Uses ``argpartition`` so the cost is linear in ``len(scores)``.
    """
    if len(scores) > k:
        best = np.argpartition(scores, len(scores) - k)[-k:]
        ids, scores = ids[best], scores[best]
    order = np.lexsort((ids, -scores))
    return [
        ScoredId(chunk_id=int(i), score=float(s))
        for i, s in zip(ids[order].tolist(), scores[order].tolist(), strict=True)
    ]


class NumpyVectorIndex:
    """Exact inner-product search by one matrix-vector product (a ``VectorIndex``).

    Costs O(N x dim) per query; meant as the reference in tests and for tiny
    collections. Rows live in a matrix whose capacity doubles, so adding is
    amortised O(new rows); removing compacts the matrix (O(N)).

    Args:
        dim: Vector dimension (callers pass L2-normalised vectors).
    """

    def __init__(self, dim: int) -> None:
        self.dim = check_dimension(dim)
        self._lock = threading.RLock()
        self._ids = np.zeros(0, dtype=np.int64)
        self._vectors = np.zeros((16, self.dim), dtype=np.float32)
        self._sorted = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._ids)

    def ids(self) -> np.ndarray:
        """All ids held, int64, sorted."""
        return self._sorted.copy()

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under int64 ids.

        Raises:
            InvalidInput: see :func:`check_vectors_to_add`.
        """
        with self._lock:
            ids, vectors = check_vectors_to_add(ids, vectors, self.dim, self._sorted)
            n, end = len(self._ids), len(self._ids) + len(ids)
            if end > len(self._vectors):
                grown = np.zeros((max(end, 2 * len(self._vectors)), self.dim), dtype=np.float32)
                grown[:n] = self._vectors[:n]
                self._vectors = grown
            self._vectors[n:end] = vectors
            self._ids = np.concatenate((self._ids, ids))
            self._sorted = np.sort(self._ids)

    def remove(self, ids: Iterable[int]) -> int:
        """Remove ids (unknown ids are ignored); returns how many were removed."""
        with self._lock:
            doomed = np.isin(self._ids, as_id_array(ids))
            removed = int(doomed.sum())
            if removed:
                keep = ~doomed
                n = len(self._ids)
                self._vectors = np.ascontiguousarray(self._vectors[:n][keep])
                self._ids = self._ids[keep]
                self._sorted = np.sort(self._ids)
            return removed

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors of ``ids``, shape (len(ids), dim).

        Raises:
            InvalidInput: an id is not held.
        """
        with self._lock:
            ids = as_id_array(ids)
            found = sorted_contains(self._sorted, ids)
            if not found.all():
                raise InvalidInput(f"ids {ids[~found][:5].tolist()} are not in the vector index")
            rows = np.argsort(self._ids)[np.searchsorted(self._sorted, ids)]
            return self._vectors[rows].copy()

    def search(
        self, query: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> list[ScoredId]:
        """Top ``k`` ids by inner product, best first; only ``allowed_ids`` when given.

        Raises:
            InvalidInput: ``k`` < 1 or the query has the wrong dimension.
        """
        k = check_k(k)
        q = as_query(query, self.dim)[0]
        with self._lock:
            n = len(self._ids)
            if n == 0:
                return []
            ids, matrix = self._ids, self._vectors[:n]
            if allowed_ids is not None:
                mask = np.isin(ids, as_id_array(allowed_ids))
                ids, matrix = ids[mask], matrix[mask]
            return top_k_exact(ids, matrix @ q, k)

    def save(self, path: Path | str) -> None:
        """Write ids and vectors to one ``.npz`` file atomically."""
        with self._lock:
            n = len(self._ids)
            meta = json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION, "dim": self.dim})
            arrays: dict[str, Any] = {
                "meta": np.frombuffer(meta.encode(), dtype=np.uint8),
                "ids": self._ids,
                "vectors": self._vectors[:n],
            }
            atomic_write(path, lambda handle: np.savez(handle, **arrays))

    @classmethod
    def load(cls, path: Path | str) -> NumpyVectorIndex:
        """Read an index written by :meth:`save`.

        Raises:
            IndexInconsistent: the file is missing, unreadable or of another format.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(bytes(data["meta"]))
                if meta.get("format") != FORMAT_NAME or meta.get("version") != FORMAT_VERSION:
                    raise ValueError(f"format {meta.get('format')!r} v{meta.get('version')!r}")
                ids, vectors = data["ids"], data["vectors"]
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise IndexInconsistent(
                f"vector index file {path} cannot be read ({exc}); "
                "rebuild it with `rag doctor --repair`"
            ) from exc
        index = cls(meta["dim"])
        index.add(ids, vectors)
        return index
