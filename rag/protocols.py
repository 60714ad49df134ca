"""The roles of the system, each a Protocol with a documented contract.

Implementations are small classes elsewhere; ``rag.services.build_services``
is the one place that picks them from settings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from rag.types import Chunk, CleanText, ParsedDocument, ScoredId


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
    dimension: int
    languages: frozenset[str]

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
    context_length: int

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the generator's own tokenizer."""
        ...

    def generate(self, messages: Sequence[dict[str, str]], *, max_new_tokens: int) -> str:
        """The whole completion."""
        ...

    def stream(self, messages: Sequence[dict[str, str]], *, max_new_tokens: int) -> Iterator[str]:
        """The completion as text pieces, as they are produced."""
        ...
