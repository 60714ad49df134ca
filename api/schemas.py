"""Request and response models of the REST API (with examples for the OpenAPI page)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

GeneratorName = Literal["transformers", "openai", "extractive"]

# The largest integer every supported database takes as LIMIT, OFFSET or an
# INTEGER value (PostgreSQL's int4; SQLite raises OverflowError past 2**63 - 1).
MAX_SQL_INT = 2**31 - 1
SqlInt = Annotated[int, Field(ge=0, le=MAX_SQL_INT)]


def _json_integer(value: Any) -> Any:
    """JSON Schema's integer: 3 and 3.0 are integers, "3" and true are not."""
    if isinstance(value, bool) or isinstance(value, str):
        raise ValueError("must be a JSON integer, not a string or boolean")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# The bounds come before the validator so that they reach the JSON Schema.
PageNumber = Annotated[int, Field(ge=1, le=MAX_SQL_INT), BeforeValidator(_json_integer)]
TopK = Annotated[int, Field(ge=1, le=100), BeforeValidator(_json_integer)]
NewTokens = Annotated[int, Field(ge=1, le=4096), BeforeValidator(_json_integer)]
OneChoice = Annotated[int, Field(ge=1, le=1), BeforeValidator(_json_integer)]
# Same rule as rag.knowledge_base.validate_collection_name, stated in the schema.
COLLECTION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
CollectionName = Annotated[
    str,
    Field(
        pattern=COLLECTION_PATTERN,
        description="Letters, digits, '_', '.' or '-', starting with a letter or digit "
        "(1-128 characters).",
    ),
]
# A question must hold something besides whitespace (the server trims it).
NON_BLANK = r"\S"
_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(value: Any, where: str = "") -> str | None:
    """The path of the first string (or key) holding a lone surrogate, if any."""
    if isinstance(value, str):
        return where or "value" if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{where}.{key}" if where else str(key)
            if isinstance(key, str) and _SURROGATE.search(key):
                return inner
            found = _lone_surrogate(item, inner)
            if found:
                return found
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = _lone_surrogate(item, f"{where}[{i}]")
            if found:
                return found
    return None


def _not_blank(value: str) -> str:
    # The pattern says the same, but regex engines disagree on what is a space
    # (\x1c-\x1f); the server trims with Python's rules, so check with them too.
    if not value.strip():
        raise ValueError("must hold a character other than whitespace")
    return value


class ApiModel(BaseModel):
    """Base of request bodies: text that is not valid Unicode is refused at the door.

    JSON may carry lone surrogates (escaped U+D800 to U+DFFF) that no UTF-8 store, tokeniser or
    database driver accepts; they are a 422 here rather than a 500 deep inside.
    """

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        where = _lone_surrogate(data)
        if where:
            raise ValueError(
                f"{where}: text must be valid Unicode (it holds a lone surrogate code point); "
                "send UTF-8 text"
            )
        return data


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

# Routes that generate answers also answer this.
GENERATOR_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "The generator cannot be loaded or reached"}
}

# Routes that read a JSON body also answer these.
JSON_BODY_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "The body is not valid JSON (code malformed_json)",
        415: "The body is not sent as application/json",
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
class CollectionCreate(ApiModel):
    """A new collection."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "handbook"}]})

    name: CollectionName


class CollectionOut(BaseModel):
    """A collection and its sizes."""

    id: int
    name: str = Field(examples=["handbook"])
    documents: int = Field(examples=[12])
    chunks: int = Field(examples=[840])
    created_at: str
    embedding_model: str = Field(
        "",
        examples=["all-MiniLM-L6-v2"],
        description="The model its vectors were made with (queries use it); '' before any.",
    )
    embedding_dim: int = Field(0, examples=[384], description="Vector size (0 before any).")


class CollectionReembed(ApiModel):
    """Which embedding model a collection's vectors should be remade with."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"model": "multilingual-e5-small"}]})

    model: str = Field(
        min_length=1,
        max_length=512,
        description="A RAG_EMBEDDING__MODEL value: 'bundled', 'multilingual-e5-small', or a "
        "local sentence-transformers folder.",
    )


class CollectionList(BaseModel):
    """The collections the API key may use."""

    collections: list[CollectionOut]
    default_collection: str = Field(
        description="Where an upload naming no collection goes, for this API key."
    )


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
    ocr_confidence: float | None = Field(
        None, description="OCR confidence (0-1) when the chunk's text was read by OCR."
    )


class PageView(BaseModel):
    """One page of a document as the viewer shows it, with the cited text marked."""

    document_id: str
    filename: str
    media_type: str
    page: int = Field(description="The page, from 1.")
    page_count: int
    text: str = Field(description="The page's indexed text (rebuilt from its chunks).")
    highlight_start: int | None = Field(
        None, description="Start of the cited chunk in text (with chunk_id), else null."
    )
    highlight_end: int | None = Field(None, description="End of the cited chunk in text.")
    image_url: str | None = Field(
        None, description="The page rendered as PNG (PDF only), else null."
    )
    boxes: list[list[float]] = Field(
        default_factory=list,
        description="Where the cited text lies on the image: [left, top, right, bottom] as "
        "fractions of the page, one box per line (empty for scans and other formats).",
    )


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
class AskRequest(ApiModel):
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

    question: str = Field(
        min_length=1,
        pattern=NON_BLANK,
        description="The question (the server's rules limit its length).",
    )
    collections: list[CollectionName] = Field(
        default_factory=list, description="Search these (all if empty)."
    )
    document_ids: list[str] = Field(
        default_factory=list, description="Only these documents (404 for an unknown id)."
    )
    pages: tuple[PageNumber, PageNumber] | None = Field(
        None, description="Only pages first..last (1-based; the two may come in either order)."
    )
    top_k: TopK | None = Field(None, description="Sources handed to the generator.")
    generator: GeneratorName | None = Field(None, description="Override the generator backend.")
    max_new_tokens: NewTokens | None = None
    stream: StrictBool = Field(False, description="Answer as server-sent events.")

    _question_not_blank = field_validator("question")(_not_blank)

    @field_validator("pages")
    @classmethod
    def _pages_in_order(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        # A range given last-first means the same pages; JSON Schema cannot say
        # "first <= last", so the schema and the server agree by accepting both.
        return None if value is None else (min(value), max(value))


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
class ChatRequest(ApiModel):
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

    message: str = Field(
        min_length=1, pattern=NON_BLANK, description="The user's message (not only whitespace)."
    )
    session_id: str | None = Field(None, description="Continue this session (new one if absent).")
    collections: list[CollectionName] | None = Field(
        None, description="Search these (default: the session's collections, or all)."
    )
    document_ids: list[str] = Field(
        default_factory=list, description="Only these documents (404 for an unknown id)."
    )
    generator: GeneratorName | None = None
    stream: StrictBool = False

    _message_not_blank = field_validator("message")(_not_blank)


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
class TextPart(ApiModel):
    """A text part of a message's content."""

    model_config = ConfigDict(extra="allow")

    type: Literal["text"]
    text: str = Field(min_length=1, pattern=NON_BLANK, description="Not only whitespace.")

    _text_not_blank = field_validator("text")(_not_blank)


class UserMessage(ApiModel):
    """A user message: text, or text parts (images and audio are not supported)."""

    model_config = ConfigDict(extra="allow")

    role: Literal["user"]
    content: (
        Annotated[str, Field(min_length=1, pattern=NON_BLANK)]
        | Annotated[list[TextPart], Field(min_length=1)]
    )

    @field_validator("content")
    @classmethod
    def _has_text(cls, value: str | list[TextPart]) -> str | list[TextPart]:
        text = value if isinstance(value, str) else "".join(p.text for p in value)
        if not text.strip():
            raise ValueError("a user message must hold text besides whitespace")
        return value

    def text(self) -> str:
        """The message text, joining text parts."""
        return (
            self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        )


class OtherMessage(ApiModel):
    """A system, developer, assistant or tool message (assistant turns become history)."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message text, joining text parts."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")


OpenAIMessage = Annotated[UserMessage | OtherMessage, Field(discriminator="role")]


class ChatCompletionRequest(ApiModel):
    """OpenAI's chat completion request; ``model`` names the collection.

    The last user message is the question; the user and assistant messages
    before it are the history (messages after it are ignored). Parameters the
    server cannot honour are refused, as the OpenAI API refuses invalid ones.
    """

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

    model: CollectionName = Field(description="The collection to answer from.")
    messages: list[OpenAIMessage] = Field(
        min_length=1,
        description="The conversation; it must hold at least one user message.",
        json_schema_extra={
            "contains": {
                "type": "object",
                "properties": {"role": {"const": "user"}},
                "required": ["role"],
            }
        },
    )
    stream: StrictBool = False
    max_tokens: NewTokens | None = None
    max_completion_tokens: NewTokens | None = None
    n: OneChoice | None = Field(None, description="Only one choice is generated.")
    temperature: float | None = Field(
        None,
        ge=0,
        le=2,
        strict=True,
        description="Accepted for compatibility; answers are deterministic.",
    )
    top_p: float | None = Field(None, gt=0, le=1, strict=True)
    top_k: TopK | None = Field(None, description="Sources handed to the generator.")

    @field_validator("messages")
    @classmethod
    def _has_user_message(cls, value: list[Any]) -> list[Any]:
        if not any(isinstance(m, UserMessage) for m in value):
            raise ValueError("messages must hold a user message with the question")
        return value


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
