"""Request and response models of the REST API (with examples for the OpenAPI page)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

GeneratorName = Literal["transformers", "openai", "extractive"]


# ---------------------------------------------------------------- errors
class ErrorDetail(BaseModel):
    """What went wrong."""

    code: str = Field(examples=["document_not_found"])
    message: str = Field(examples=["no document with id 'abc'; list them with `rag docs list`"])
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    """Body of every error response."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        401: "Missing or wrong API key",
        404: "Unknown id or collection",
        422: "Invalid input",
        429: "Rate limit exceeded",
    }.items()
}


# ----------------------------------------------------------------- health
class HealthResponse(BaseModel):
    """Liveness."""

    status: str = Field(examples=["ok"])


class ReadyResponse(BaseModel):
    """Readiness with the result of each check."""

    status: str = Field(examples=["ready"])
    checks: dict[str, dict[str, Any]] = Field(
        examples=[{"database": {"ok": True}, "indexes": {"ok": True, "collections": 2}}]
    )


# ------------------------------------------------------------ collections
class CollectionCreate(BaseModel):
    """A new collection."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "handbook"}]})

    name: str = Field(description="Letters, digits, '_', '.' or '-' (1-128 characters).")


class CollectionOut(BaseModel):
    """A collection and its sizes."""

    id: int
    name: str = Field(examples=["handbook"])
    documents: int = Field(examples=[12])
    chunks: int = Field(examples=[840])
    created_at: str


class CollectionList(BaseModel):
    """All collections."""

    collections: list[CollectionOut]


class CollectionDeleted(BaseModel):
    """What a collection deletion removed."""

    deleted: str = Field(examples=["handbook"])
    documents: int = Field(examples=[12])


# -------------------------------------------------------------- documents
class DocumentOut(BaseModel):
    """Metadata of one document."""

    id: str = Field(examples=["3f2a9c0e5b7d4e1f8a6b2c9d0e1f2a3b"])
    collection: str = Field(examples=["default"])
    filename: str = Field(examples=["report.pdf"])
    media_type: str = Field(examples=["application/pdf"])
    size_bytes: int
    sha256: str
    pages: int = Field(examples=[3])
    chunks: int = Field(examples=[14])
    status: str = Field(examples=["ready"], description="pending, processing, ready or failed.")
    error: str | None = Field(None, description="Why ingestion failed.")
    version: int
    created_at: str
    updated_at: str


class DocumentList(BaseModel):
    """One page of documents and the total matching count."""

    documents: list[DocumentOut]
    total: int


class ChunkOut(BaseModel):
    """One chunk of a document."""

    id: int
    document_id: str
    ordinal: int
    text: str
    page_start: int
    page_end: int
    char_start: int
    char_end: int
    token_count: int


class ChunkList(BaseModel):
    """One page of a document's chunks."""

    chunks: list[ChunkOut]
    total: int


class JobRef(BaseModel):
    """An accepted upload and the job that ingests it."""

    job_id: str
    document_id: str | None
    filename: str = Field(examples=["report.pdf"])
    status: str = Field(examples=["queued"], description="queued, running, succeeded or failed.")


class UploadAccepted(BaseModel):
    """The jobs created by an upload."""

    jobs: list[JobRef]


class DocumentDeleted(BaseModel):
    """The deleted document."""

    deleted: str


class JobOut(BaseModel):
    """Progress of one ingest job."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "9b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e",
                    "status": "running",
                    "filename": "report.pdf",
                    "collection": "default",
                    "document_id": "3f2a9c0e5b7d4e1f8a6b2c9d0e1f2a3b",
                    "pages_parsed": 3,
                    "chunks_total": 14,
                    "chunks_embedded": 8,
                    "error": None,
                    "error_code": None,
                    "created_at": "2025-01-01T12:00:00+00:00",
                    "updated_at": "2025-01-01T12:00:02+00:00",
                }
            ]
        }
    )

    id: str
    status: str
    filename: str
    collection: str
    document_id: str | None
    pages_parsed: int
    chunks_total: int
    chunks_embedded: int
    error: str | None
    error_code: str | None
    created_at: str
    updated_at: str


# -------------------------------------------------------------------- ask
class AskRequest(BaseModel):
    """A question to the knowledge base."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"question": "What is the refund policy?", "collections": ["handbook"]},
                {"question": "Summarise page 2", "document_ids": ["3f2a9c0e"], "pages": [2, 2]},
            ]
        },
    )

    question: str = Field(description="The question (the server's rules limit its length).")
    collections: list[str] = Field(default_factory=list, description="Search these (all if empty).")
    document_ids: list[str] = Field(default_factory=list, description="Only these documents.")
    pages: tuple[int, int] | None = Field(None, description="Only pages first..last (1-based).")
    top_k: int | None = Field(None, ge=1, le=100, description="Sources handed to the generator.")
    generator: GeneratorName | None = Field(None, description="Override the generator backend.")
    max_new_tokens: int | None = Field(None, ge=1, le=4096)
    stream: bool = Field(False, description="Answer as server-sent events.")

    @field_validator("pages")
    @classmethod
    def _pages_in_order(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not 1 <= value[0] <= value[1]:
            raise ValueError(f"pages must be [first, last] with 1 <= first <= last, got {value}")
        return value


class CitationOut(BaseModel):
    """A cited source."""

    number: int = Field(examples=[1])
    document_id: str
    filename: str = Field(examples=["report.pdf"])
    page: int = Field(examples=[3])
    chunk_id: int
    snippet: str
    score: float
    dense_rank: int | None = None
    sparse_rank: int | None = None


class FlagsOut(BaseModel):
    """What the rules did to the answer."""

    refused: bool
    injection_detected: bool
    fallback_used: bool
    redacted: bool
    not_found: bool
    truncated: bool


class AnswerOut(BaseModel):
    """A cited answer."""

    question: str
    answer: str = Field(examples=["Refunds are possible within 30 days [1]."])
    citations: list[CitationOut]
    flags: FlagsOut
    timings: dict[str, float]
    retrieval_query: str
    generator: str


# ------------------------------------------------------------------- chat
class ChatRequest(BaseModel):
    """One user message of a conversation."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"message": "What is the refund policy?", "collections": ["handbook"]},
                {
                    "message": "And for digital goods?",
                    "session_id": "5d41402abc4b2a76b9719d911017c592",
                },
            ]
        },
    )

    message: str
    session_id: str | None = Field(None, description="Continue this session (new one if absent).")
    collections: list[str] | None = Field(
        None, description="Search these (default: the session's collections, or all)."
    )
    document_ids: list[str] = Field(default_factory=list)
    generator: GeneratorName | None = None
    stream: bool = False


class ChatResponse(BaseModel):
    """The assistant's reply in a session."""

    session_id: str
    answer: str
    citations: list[CitationOut]
    flags: FlagsOut
    timings: dict[str, float]


class ChatMessageOut(BaseModel):
    """A stored message."""

    role: str = Field(examples=["user"])
    content: str
    citations: list[dict[str, Any]]
    flags: dict[str, Any]
    created_at: str


class ChatHistory(BaseModel):
    """A session's messages, oldest first."""

    session_id: str
    messages: list[ChatMessageOut]


class ChatDeleted(BaseModel):
    """The deleted session."""

    deleted: str


# --------------------------------------------------------- openai compat
class OpenAIMessage(BaseModel):
    """A chat message in OpenAI's wire format (content as text or text parts)."""

    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message text, joining text parts."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completion request; ``model`` names the collection."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "model": "handbook",
                    "messages": [{"role": "user", "content": "What is the refund policy?"}],
                }
            ]
        },
    )

    model: str
    messages: list[OpenAIMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)


class ModelOut(BaseModel):
    """A collection presented as an OpenAI model."""

    id: str
    object: str = "model"
    created: int
    owned_by: str = "rag"


class ModelList(BaseModel):
    """OpenAI model list."""

    object: str = "list"
    data: list[ModelOut]
