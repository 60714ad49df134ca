"""Optional second-stage reranking of fused hits with a local cross-encoder.

A cross-encoder reads question and chunk together, so it judges relevance
better than the bi-encoder and BM25 that found the candidates, at the cost of
one forward pass per candidate. It is off unless
``retrieval.reranker_path`` names a model folder.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rag.errors import ConfigError, InvalidInput
from rag.types import Hit

log = logging.getLogger(__name__)


class CrossEncoderReranker:
    """Reorders hits by a sentence-transformers ``CrossEncoder`` loaded from a local folder."""

    def __init__(self, model_dir: Path, batch_size: int = 16, *, device: str = "cpu") -> None:
        """Load the cross-encoder.

        Args:
            model_dir: A local cross-encoder folder (config.json, weights, tokenizer).
            batch_size: Question-chunk pairs per forward pass.
            device: Torch device.

        Raises:
            ConfigError: the folder does not exist or holds no loadable cross-encoder.
            InvalidInput: ``batch_size`` is below 1.
        """
        if batch_size < 1:
            raise InvalidInput(f"batch_size must be at least 1, got {batch_size}")
        model_dir = Path(model_dir).expanduser()
        if not (model_dir / "config.json").is_file():
            raise ConfigError(
                f"reranker folder {model_dir} does not exist or holds no config.json; set "
                f"RAG_RETRIEVAL__RERANKER_PATH to a local cross-encoder folder, or unset it to "
                f"turn reranking off"
            )
        from sentence_transformers import CrossEncoder

        try:
            self._model: Any = CrossEncoder(str(model_dir), device=device, local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(
                f"could not load a cross-encoder from {model_dir}: {exc}; the folder must hold a "
                f"sequence-classification model and its tokenizer"
            ) from exc
        self.model_dir = model_dir
        self.batch_size = batch_size
        self.name = f"cross-encoder:{model_dir.name}"

    def score(self, question: str, texts: Sequence[str]) -> list[float]:
        """The cross-encoder's relevance score of each text for ``question`` (higher is better)."""
        if not texts:
            return []
        scores = self._model.predict(
            [(question, text) for text in texts],
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return [float(s) for s in scores.reshape(len(texts), -1)[:, 0]]

    def rerank(self, question: str, hits: Sequence[Hit], top_k: int) -> list[Hit]:
        """The ``top_k`` hits by cross-encoder score, best first, with ``rerank_score`` set.

        Ties keep the incoming (fused) order; ``score`` and the retriever ranks
        are left as they were, so the fused ranking stays visible.

        Raises:
            InvalidInput: ``top_k`` is below 1.
        """
        if top_k < 1:
            raise InvalidInput(f"top_k must be at least 1, got {top_k}")
        if not hits:
            return []
        started = time.perf_counter()
        scores = self.score(question, [hit.text for hit in hits])
        order = sorted(range(len(hits)), key=lambda i: -scores[i])
        reranked = [dataclasses.replace(hits[i], rerank_score=scores[i]) for i in order[:top_k]]
        log.debug(
            "reranked candidates=%d top_k=%d seconds=%.3f",
            len(hits),
            top_k,
            time.perf_counter() - started,
        )
        return reranked
