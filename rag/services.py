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
from typing import Any

from rag.embedding import SentenceTransformerEmbedder
from rag.errors import ConfigError
from rag.knowledge_base import KnowledgeBase
from rag.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Services:
    """The wired-up system for one process (CLI command, server, evaluation)."""

    settings: Settings
    kb: KnowledgeBase
    embedder: Any
    _generators: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def generator(self, backend: str | None = None) -> Any:
        """The generator for ``backend`` (default from settings), built once, lazily."""
        name = backend or self.settings.generator.backend
        with self._lock:
            if name not in self._generators:
                self._generators[name] = build_generator(self.settings, name)
            return self._generators[name]

    def register_generator(self, name: str, generator: Any) -> None:
        """Use ``generator`` for backend ``name`` (e.g. a preloaded model shared by tests)."""
        with self._lock:
            self._generators[name] = generator

    def retriever(self) -> Any:
        """A hybrid retriever over this knowledge base."""
        from rag.query.retrieval import HybridRetriever

        return HybridRetriever(self.kb, self.embedder, self.settings.retrieval, self.reranker())

    def reranker(self) -> Any:
        """The optional cross-encoder reranker (None when not configured)."""
        path = self.settings.retrieval.reranker_path
        if not path:
            return None
        with self._lock:
            if "__reranker__" not in self._generators:
                from pathlib import Path

                from rag.rerank import CrossEncoderReranker

                self._generators["__reranker__"] = CrossEncoderReranker(Path(path))
            return self._generators["__reranker__"]

    def pipeline(self) -> Any:
        """The question-answering pipeline."""
        from rag.query.pipeline import AnswerPipeline

        return AnswerPipeline(self)

    def close(self) -> None:
        """Release the database."""
        self.kb.close()


def build_embedder(settings: Settings) -> Any:
    """The embedder named by settings ('hashing' gives the fast test embedder)."""
    if settings.embedding.model.startswith("hashing"):
        from rag.embedding import HashingEmbedder

        _, _, dim = settings.embedding.model.partition(":")
        languages = settings.embedding.languages
        if languages:
            return HashingEmbedder(int(dim or 256), languages=frozenset(languages))
        return HashingEmbedder(int(dim or 256))
    return SentenceTransformerEmbedder(settings.embedding, models_dir=settings.data_dir / "models")


def build_generator(settings: Settings, backend: str) -> Any:
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
    settings: Settings, *, recover: bool = True, embedder: Any | None = None
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
    return Services(settings=settings, kb=kb, embedder=embedder)
