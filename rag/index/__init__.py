"""Vector (FAISS, numpy) and keyword (BM25) indexes keyed by int64 chunk id.

Names are imported lazily so that ``from rag.index import BM25Index`` does not
load FAISS.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag.index.atomic import atomic_write, atomic_write_bytes
    from rag.index.bm25 import BM25Index
    from rag.index.faiss_index import FaissVectorIndex
    from rag.index.numpy_index import NumpyVectorIndex

_EXPORTS = {
    "BM25Index": "rag.index.bm25",
    "FaissVectorIndex": "rag.index.faiss_index",
    "NumpyVectorIndex": "rag.index.numpy_index",
    "atomic_write": "rag.index.atomic",
    "atomic_write_bytes": "rag.index.atomic",
}

__all__ = [
    "BM25Index",
    "FaissVectorIndex",
    "NumpyVectorIndex",
    "atomic_write",
    "atomic_write_bytes",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rag.index' has no attribute {name!r}")
    return getattr(import_module(module), name)
