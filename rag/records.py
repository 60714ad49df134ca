"""Plain views of stored rows, handed across layers (never live ORM objects)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from rag.types import Chunk


@dataclass(frozen=True)
class CollectionInfo:
    """A collection and its sizes."""

    id: int
    name: str
    documents: int
    chunks: int
    created_at: datetime
    # The model its vectors were made with and their size ("" and 0: none yet).
    embedding_model: str = ""
    embedding_dim: int = 0

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        return data


@dataclass(frozen=True)
class DocumentInfo:
    """Metadata of one document (the `--json` and API shape)."""

    id: str
    collection: str
    filename: str
    media_type: str
    size_bytes: int
    sha256: str
    pages: int
    chunks: int
    status: str
    error: str | None
    version: int
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        data["updated_at"] = self.updated_at.isoformat()
        return data


@dataclass(frozen=True)
class ChunkInfo:
    """A stored chunk with where it comes from."""

    id: int
    document_id: str
    collection_id: int
    ordinal: int
    text: str
    page_start: int
    page_end: int
    char_start: int
    char_end: int
    token_count: int
    page_breaks: tuple[tuple[int, int], ...] = ()
    ocr_confidence: float | None = None

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        data = asdict(self)
        data["page_breaks"] = [list(b) for b in self.page_breaks]
        return data


@dataclass(frozen=True)
class CollectionCheck:
    """Consistency of one collection across SQL, FAISS and BM25."""

    collection: str
    sql_chunks: int
    faiss_chunks: int
    bm25_chunks: int
    missing_in_faiss: tuple[int, ...]
    extra_in_faiss: tuple[int, ...]
    missing_in_bm25: tuple[int, ...]
    extra_in_bm25: tuple[int, ...]
    stuck_documents: tuple[str, ...]
    # Unfinished documents whose ingest job the server resumes (not a fault).
    resumable_documents: tuple[str, ...] = ()

    @property
    def consistent(self) -> bool:
        """True when all three stores hold the same chunk ids and nothing is stuck."""
        return not (
            self.missing_in_faiss
            or self.extra_in_faiss
            or self.missing_in_bm25
            or self.extra_in_bm25
            or self.stuck_documents
        )

    def to_dict(self) -> dict:
        """JSON-ready dict (id lists truncated to 20)."""
        data = {k: (list(v)[:20] if isinstance(v, tuple) else v) for k, v in asdict(self).items()}
        data["consistent"] = self.consistent
        return data


@dataclass(frozen=True)
class ReadyDocument:
    """A document's chunks and vectors, ready to be committed (``KnowledgeBase.commit_documents``).

    ``replaces`` are the ids of older versions removed in the same transaction.
    """

    doc_id: str
    chunks: Sequence[Chunk]
    vectors: np.ndarray
    page_count: int
    replaces: tuple[str, ...] = ()
    media_type: str | None = None
