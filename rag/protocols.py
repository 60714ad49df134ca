"""The roles of the system, each a Protocol with a documented contract.

Implementations are small classes elsewhere; ``rag.services.build_services``
is the one place that picks them from settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from sqlalchemy.orm import Session

from rag.types import Chunk, CleanText, Hit, ParsedDocument, ScoredId


@runtime_checkable
class TokenCounter(Protocol):
    """Counts tokens the way the embedding model will see them."""

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Number of tokens of each text, without special tokens."""
        ...

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character span of each token of ``text`` (used to split over-long sentences)."""
        ...


@runtime_checkable
class Parser(Protocol):
    """Turns the bytes of one file into pages of text."""

    media_type: str

    def parse(self, data: bytes, *, password: str | None = None) -> ParsedDocument:
        """Parse ``data``.

        Raises:
            ParseError, EncryptedDocument, EmptyDocument: with a message saying what to do.
        """
        ...


@runtime_checkable
class Chunker(Protocol):
    """Splits a document's cleaned text into chunks that fit the embedder."""

    def chunk(self, clean: CleanText) -> list[Chunk]:
        """Chunks in order; their texts tile ``clean.text`` once overlaps are removed."""
        ...


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to L2-normalised float32 vectors.

    ``languages`` are the ISO 639-1 codes of the languages the model handles
    (``"*"``: any); hybrid retrieval leaves the dense retriever out for a
    question in any other language (see ``rag.text.language``).
    """

    name: str
    languages: frozenset[str]

    # Read-only, so an implementation may compute it (from a model it loads lazily).
    @property
    def dimension(self) -> int:
        """Length of each vector."""
        ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Shape (len(texts), dimension), float32, each row of unit length."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """Shape (dimension,), float32, unit length."""
        ...

    @property
    def token_counter(self) -> TokenCounter:
        """The tokenizer chunk sizes are measured with."""
        ...


@runtime_checkable
class EmbedderProvider(Protocol):
    """Hands out the embedder of a model by the name a collection records.

    ``default`` embeds for the configured model (new collections, and
    collections that recorded no model); :meth:`get` builds any other model's
    embedder once, lazily.
    """

    @property
    def default(self) -> Embedder:
        """The configured model's embedder."""
        ...

    def get(self, model: str) -> Embedder:
        """The embedder of ``model`` ('' means :attr:`default`).

        Raises:
            ConfigError: The model cannot be loaded here.
        """
        ...


@runtime_checkable
class VectorIndex(Protocol):
    """Nearest-neighbour search over vectors keyed by chunk id (inner product)."""

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under int64 ids; an id already present is an error."""
        ...

    def remove(self, ids: Iterable[int]) -> int:
        """Remove ids (unknown ids are ignored); returns how many were removed."""
        ...

    def search(
        self, query: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> list[ScoredId]:
        """Top ``k`` by inner product, restricted to ``allowed_ids`` when given."""
        ...

    def ids(self) -> np.ndarray:
        """All ids held, int64, sorted."""
        ...

    def __len__(self) -> int:
        """Number of vectors held."""
        ...

    def save(self, path: Path) -> None:
        """Persist atomically (temp file, fsync, rename)."""
        ...


@runtime_checkable
class SparseIndex(Protocol):
    """Keyword (BM25) search over chunk texts keyed by chunk id."""

    def add(self, ids: Sequence[int], texts: Sequence[str]) -> None:
        """Index texts under ids; an id already present is an error."""
        ...

    def remove(self, ids: Iterable[int]) -> int:
        """Remove ids (unknown ids are ignored); returns how many were removed."""
        ...

    def search(self, query: str, k: int, allowed_ids: np.ndarray | None = None) -> list[ScoredId]:
        """Top ``k`` by BM25 score (> 0 only), restricted to ``allowed_ids`` when given."""
        ...

    def ids(self) -> np.ndarray:
        """All ids held, int64, sorted."""
        ...

    def __len__(self) -> int:
        """Number of chunks held."""
        ...

    def save(self, path: Path) -> None:
        """Persist atomically (temp file, fsync, rename)."""
        ...


@runtime_checkable
class Generator(Protocol):
    """Produces an answer from chat messages (OpenAI-style role/content dicts)."""

    name: str

    @property
    def context_length(self) -> int:
        """Tokens the model reads, prompt and answer together."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the generator's own tokenizer."""
        ...

    def generate(self, messages: Sequence[dict[str, str]], *, max_new_tokens: int) -> str:
        """The whole completion."""
        ...

    def stream(self, messages: Sequence[dict[str, str]], *, max_new_tokens: int) -> Iterator[str]:
        """The completion as text pieces, as they are produced."""
        ...


AfterCommit = Callable[[], None]
"""What a :class:`SearchStore` does once the SQL transaction it staged a change in commits."""


@runtime_checkable
class SearchStore(Protocol):
    """Where each collection's chunks are searched: vectors (inner product) and BM25 terms.

    The knowledge base owns the SQL rows (collections, documents, chunks with
    their text and vector); a store indexes them. Every change is *staged*
    inside the SQL transaction that changes the rows (``session`` is that
    transaction, already flushed, so chunk ids exist) and returns what to do
    after the commit. The file store (FAISS + BM25 files) writes a journal
    entry in the transaction and changes its in-memory indexes after commit;
    the Postgres store writes its tables in the transaction, so a commit is
    the whole change and its after-commit step does nothing. Either way a
    process killed at any point leaves SQL and the indexes in agreement on the
    next start (:meth:`open`), and :meth:`indexed_ids` lets the consistency
    check prove it.

    The caller holds :meth:`writing` around the transaction and the
    after-commit step of every write to a collection.
    """

    name: str  # "files" or "postgres": shown by `rag doctor` and the metrics
    # True when searches run in another process (a database server): a dense and a
    # keyword search can then run at once from two threads without sharing this
    # process's interpreter (the file store searches in-process: False).
    searches_off_process: bool

    def open(self, collection_ids: Sequence[int]) -> None:
        """Start-up: make these collections' indexes agree with SQL (journal replay)."""
        ...

    def writing(self, collection_id: int) -> AbstractContextManager[None]:
        """Exclusive write access to one collection's indexes (threads and processes)."""
        ...

    def stage_add(
        self,
        session: Session,
        collection_id: int,
        ids: np.ndarray,
        vectors: np.ndarray,
        texts: Sequence[str],
    ) -> AfterCommit:
        """Index new chunks (ids int64, vectors float32 unit rows, texts) in ``session``."""
        ...

    def stage_remove(self, session: Session, collection_id: int, ids: Sequence[int]) -> AfterCommit:
        """Unindex chunks; called before their SQL rows are deleted in ``session``."""
        ...

    def stage_reembed(
        self, session: Session, collection_id: int, ids: np.ndarray, vectors: np.ndarray
    ) -> AfterCommit:
        """Replace every vector of the collection (ids: all its chunks, vectors: the new ones).

        The vector size may change; the BM25 terms do not.
        """
        ...

    def stage_drop(self, session: Session, collection_id: int) -> AfterCommit:
        """Forget a collection whose rows are deleted in ``session``."""
        ...

    def stage_create(self, session: Session, collection_id: int) -> AfterCommit:
        """A new collection got ``collection_id`` (discard anything an older one left under it)."""
        ...

    def search_dense(
        self, collection_id: int, query: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> list[ScoredId]:
        """Top ``k`` by inner product, only ``allowed`` ids when given (empty: nothing).

        Raises:
            EmbeddingMismatch: ``query`` has another size than the collection's vectors.
        """
        ...

    def search_sparse(
        self, collection_id: int, query: str, k: int, allowed: np.ndarray | None
    ) -> list[ScoredId]:
        """Top ``k`` by BM25 score (> 0 only) over the project's tokens of ``query``."""
        ...

    def sparse_ceiling(self, collection_id: int, query: str) -> float:
        """The most any chunk could score for ``query``: every term matched, tf saturated."""
        ...

    def size(self, collection_id: int) -> int:
        """Chunks indexed for keywords in the collection."""
        ...

    def indexed_ids(self, collection_id: int) -> tuple[set[int], set[int]]:
        """(ids with a vector, ids with keyword terms) as the indexes hold them."""
        ...

    def restore(self, collection_id: int, missing: Sequence[int], extra: Sequence[int]) -> None:
        """Repair: index ``missing`` chunks from their SQL rows, unindex ``extra`` ids."""
        ...

    def checkpoint(self) -> int:
        """Save what is due (idle callers); returns how many collections were saved."""
        ...

    def flush(self) -> None:
        """Save everything unsaved."""
        ...

    def close(self) -> None:
        """Flush and release resources."""
        ...


@runtime_checkable
class Reranker(Protocol):
    """Reorders retrieved hits by a finer relevance model (a cross-encoder)."""

    def rerank(self, question: str, hits: Sequence[Hit], top_k: int) -> list[Hit]:
        """The ``top_k`` best of ``hits`` for ``question``, best first.

        Sets each returned hit's ``rerank_score`` and leaves its fused ``score``
        and retriever ranks as they were.

        Raises:
            InvalidInput: ``top_k`` is below 1.
        """
        ...
