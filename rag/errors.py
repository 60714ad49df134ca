"""One small exception hierarchy for the whole project.

Every message says what was wrong and what to do about it. The API maps these
classes to HTTP statuses in one table (``api/errors.py``); the CLI maps them to
exit codes. Nothing else invents its own error types.
"""

from __future__ import annotations


class RagError(Exception):
    """Base class of every error the project raises on purpose.

    Attributes:
        code: A stable machine-readable code (used in the API error body).
        details: Optional structured context for the client.
    """

    code = "rag_error"

    def __init__(self, message: str, *, details: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class ConfigError(RagError):
    """A setting is invalid or a configured resource (model folder, URL) is unusable."""

    code = "config_error"


class InvalidInput(RagError):
    """A request parameter is out of range or malformed."""

    code = "invalid_input"


class UnsupportedFileType(RagError):
    """The bytes are not a file type the parsers read (see ``ingest.sniff``)."""

    code = "unsupported_file_type"


class FileTooLarge(RagError):
    """The upload exceeds the configured size limit."""

    code = "file_too_large"


class ParseError(RagError):
    """The file could not be read (corrupt, truncated)."""

    code = "parse_error"


class EncryptedDocument(ParseError):
    """The PDF is encrypted and no (correct) password was given."""

    code = "encrypted_document"


class EmptyDocument(ParseError):
    """The file holds no extractable text (empty file, image-only PDF)."""

    code = "empty_document"


class NotFound(RagError):
    """Base for unknown ids."""

    code = "not_found"


class BlobNotFound(NotFound):
    """No bytes are stored under the key (an original file or an upload)."""

    code = "blob_not_found"


class DocumentNotFound(NotFound):
    """No document with that id."""

    code = "document_not_found"


class CollectionNotFound(NotFound):
    """No collection with that name."""

    code = "collection_not_found"


class JobNotFound(NotFound):
    """No ingest job with that id."""

    code = "job_not_found"


class ChatNotFound(NotFound):
    """No chat session with that id."""

    code = "chat_not_found"


class PageNotFound(NotFound):
    """The document has no such page, or no page image (only PDF pages render)."""

    code = "page_not_found"


class EmbeddingModelNotFound(NotFound):
    """No embedding model of that name can be loaded here (no such folder or known name)."""

    code = "model_not_found"


class Conflict(RagError):
    """The request conflicts with the current state (e.g. collection exists)."""

    code = "conflict"


class DuplicateDocument(Conflict):
    """The same bytes are already in the collection (ready, or being ingested).

    ``existing`` is the document that holds them; callers report it as the
    ``existing`` outcome rather than an error.
    """

    code = "duplicate_document"

    def __init__(self, message: str, existing: object, *, details: dict | None = None) -> None:
        super().__init__(message, details=details)
        self.existing = existing


class EmbeddingMismatch(Conflict):
    """Vectors of one embedding model would meet another's (a collection keeps one model).

    Raised when a document is embedded with a model other than the one its
    collection records, or a stored index disagrees with the recorded model;
    the message names both and what to set or run.
    """

    code = "embedding_mismatch"


class IngestCancelled(RagError):
    """An ingestion stopped because its collection or document is being deleted."""

    code = "cancelled"


class UnsupportedMediaType(RagError):
    """A request body is not in the media type the route reads (e.g. JSON sent as text)."""

    code = "unsupported_media_type"


class QueryRejected(RagError):
    """A question was refused by a pre-processing rule (empty, too long, injection)."""

    code = "query_rejected"


class GeneratorUnavailable(RagError):
    """The configured generator cannot be loaded or reached."""

    code = "generator_unavailable"


class IndexInconsistent(RagError):
    """SQL, FAISS and BM25 disagree; run ``rag doctor --repair``."""

    code = "index_inconsistent"


class RateLimited(RagError):
    """Too many requests for this API key."""

    code = "rate_limited"


class Unauthorized(RagError):
    """A missing or wrong API key."""

    code = "unauthorized"


class Forbidden(RagError):
    """A valid API key that may not use this route (a tenant key on an admin route)."""

    code = "forbidden"
