"""Ingestion: bytes of one file → parsed pages → clean text → chunks → vectors → stores.

A file refused at the door (too large, empty, not a supported type,
an encrypted or corrupt Office file: :meth:`IngestService.admit`) stores
nothing; its outcome says why, with no document id. A failure after that
(unreadable or encrypted PDF, no text) leaves a ``failed`` document row that
says why, never a half-indexed document: chunks only reach SQL, FAISS and
BM25 through :meth:`rag.knowledge_base.KnowledgeBase.commit_document`.
"""

from __future__ import annotations

import logging
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ingest.chunking import SentenceChunker
from ingest.cleaning import clean_pages
from ingest.ocr import OcrEngine, build_ocr_engine
from ingest.parsers import PdfParser, get_parser
from ingest.sniff import sniff_media_type
from rag.errors import (
    DocumentNotFound,
    DuplicateDocument,
    EmptyDocument,
    FileTooLarge,
    InvalidInput,
    RagError,
)
from rag.faults import kill_point
from rag.knowledge_base import KnowledgeBase, file_sha256
from rag.protocols import Embedder
from rag.records import DocumentInfo, ReadyDocument
from rag.settings import IngestSettings
from rag.types import Chunk, CleanText

if TYPE_CHECKING:
    from rag.services import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestProgress:
    """Where one file's ingestion stands (for progress bars and job rows)."""

    stage: str  # parsing | chunking | embedding | indexing | done
    pages_parsed: int = 0
    chunks_total: int = 0
    chunks_embedded: int = 0


@dataclass(frozen=True)
class IngestOutcome:
    """Result of ingesting one file.

    ``action`` is ``created``, ``existing`` (same bytes already in the
    collection), ``replaced`` (a new version replaced older ones) or ``failed``.
    """

    filename: str
    collection: str
    action: str
    status: str
    document_id: str | None = None
    pages: int = 0
    chunks: int = 0
    error: str | None = None
    error_code: str | None = None

    @property
    def ok(self) -> bool:
        """True unless the file failed."""
        return self.action != "failed"

    def to_dict(self) -> dict:
        """JSON-ready dict (`rag ingest --json` entries)."""
        data = asdict(self)
        data["id"] = data.pop("document_id")
        return data


ProgressCallback = Callable[[IngestProgress], None]
# Most chunks embedded between two progress reports of one document.
PROGRESS_CHUNKS = 32
#: Embedding groups prepared and queued ahead of the oldest one still embedding.
MAX_GROUPS_AHEAD = 4


@dataclass(frozen=True)
class _Prepared:
    """A parsed and chunked file waiting for its vectors."""

    document_id: str
    filename: str
    media_type: str
    pages: int
    chunks: list[Chunk]


@dataclass(frozen=True)
class _Piece:
    """Chunks ``start:end`` of one prepared file, part of one embedding group."""

    position: int
    prep: _Prepared
    start: int
    end: int
    report: ProgressCallback


@dataclass(frozen=True)
class Upload:
    """One file for :meth:`IngestService.ingest_many`, with what its caller already holds.

    ``document_id`` is a row already made by :meth:`IngestService.begin` (a
    queued API upload); ``progress`` follows this file alone (pages parsed,
    chunks embedded), as a job row or a per-file bar does.
    """

    filename: str
    data: bytes
    document_id: str | None = None
    password: str | None = None
    progress: ProgressCallback | None = None


def _noop(_: IngestProgress) -> None:
    return None


def _page_breaks(clean: CleanText, chunk: Chunk) -> tuple[tuple[int, int], ...]:
    """Pages that begin inside ``chunk``, at offsets into its text.

    A chunk that repeats a table's header holds more text than its span of
    the clean text; offsets are shifted past that header.
    """
    shift = len(chunk.text) - (chunk.char_end - chunk.char_start)
    return tuple(
        (offset + shift, number)
        for offset, number in clean.page_breaks(chunk.char_start, chunk.char_end)
    )


def _ocr_confidence(by_page: dict[int, float | None], chunk: Chunk) -> float | None:
    """The lowest OCR confidence of the pages a chunk spans; None when none was OCR'd.

    Confidence is known per page, not per line once the text is cleaned, so
    a chunk is as sure as its least sure page.
    """
    found = [
        value
        for number in range(chunk.page_start, chunk.page_end + 1)
        if (value := by_page.get(number)) is not None
    ]
    return min(found) if found else None


# Bidirectional overrides and isolates make "evil\u202etxt.pdf" display as "evilfdp.txt".
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def display_name(filename: str | None) -> str:
    """A client's file name made safe to store and echo: last component, no control characters.

    Control characters (NUL, newlines, ESC...), lone surrogates and bidi
    overrides are removed, so a name can never split a header or a log line.
    The name is display only and never used as a path.
    """
    text = "".join(
        ch
        for ch in (filename or "")
        if unicodedata.category(ch) not in ("Cc", "Cs") and ch not in _BIDI_CONTROLS
    )
    name = text.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return name[:255] or "unnamed"


def _refused(filename: str, collection: str, exc: RagError) -> IngestOutcome:
    """The outcome for a file refused at the door: nothing was stored, so no id."""
    log.info("file refused filename=%s code=%s", filename, exc.code)
    return IngestOutcome(
        filename=filename,
        collection=collection,
        action="failed",
        status="failed",
        error=exc.message,
        error_code=exc.code,
    )


def _existing(doc: DocumentInfo, collection: str) -> IngestOutcome:
    """The outcome for bytes already ingested in the collection."""
    return IngestOutcome(
        filename=doc.filename,
        collection=collection,
        action="existing",
        status=doc.status,
        document_id=doc.id,
        pages=doc.pages,
        chunks=doc.chunks,
    )


class IngestService:
    """Turns files into searchable documents.

    Args:
        kb: The knowledge base written to.
        embedder: Embeds chunks; its tokenizer measures chunk sizes.
        settings: Size limit, chunk size and overlap, default collection.
    """

    def __init__(self, kb: KnowledgeBase, embedder: Embedder, settings: IngestSettings) -> None:
        self.kb = kb
        self.embedder = embedder
        self.settings = settings
        self._chunker: SentenceChunker | None = None
        self._ocr: OcrEngine | None = None

    @property
    def chunker(self) -> SentenceChunker:
        """Chunker sized to the embedder (built lazily: it needs the model's tokenizer)."""
        if self._chunker is None:
            limit = int(getattr(self.embedder, "max_tokens", self.settings.chunk_tokens))
            size = min(self.settings.chunk_tokens, limit)
            overlap = int(round(size * self.settings.chunk_overlap))
            self._chunker = SentenceChunker(
                self.embedder.token_counter, chunk_tokens=size, overlap_tokens=overlap
            )
        return self._chunker

    @property
    def ocr(self) -> OcrEngine | None:
        """The OCR engine for scanned PDF pages; None when OCR is off (models load on first use)."""
        if self._ocr is None:
            self._ocr = build_ocr_engine(self.settings)
        return self._ocr

    @property
    def max_bytes(self) -> int:
        """Largest accepted file in bytes."""
        return int(self.settings.max_file_mb * 1024 * 1024)

    def check_size(self, size: int, filename: str) -> None:
        """Raise FileTooLarge when ``size`` exceeds the limit."""
        if size > self.max_bytes:
            raise FileTooLarge(
                f"{filename} is {size / 2**20:.1f} MiB, over the {self.settings.max_file_mb:g} MiB "
                "limit; split the file or raise RAG_INGEST__MAX_FILE_MB",
                details={"size_bytes": size, "limit_bytes": self.max_bytes},
            )

    def admit(self, data: bytes, filename: str, password: str | None = None) -> str:
        """The door: check size and type; returns the sniffed media type.

        ``password`` lets an encrypted Office file in (checked here, so a wrong
        one is refused at once).

        Raises:
            FileTooLarge, EmptyDocument, UnsupportedFileType, EncryptedDocument,
            ParseError: The file is refused (nothing is stored for it).
        """
        self.check_size(len(data), filename)
        return sniff_media_type(data, filename, password)

    def ingest_path(self, path: Path, **kwargs: object) -> IngestOutcome:
        """Ingest a file from disk (see :meth:`ingest_bytes`)."""
        size = path.stat().st_size
        name = display_name(path.name)
        collection = str(kwargs.get("collection") or self.settings.default_collection)
        try:
            self.check_size(size, name)
        except FileTooLarge as exc:
            return _refused(name, collection, exc)
        return self.ingest_bytes(path.read_bytes(), name, **kwargs)  # type: ignore[arg-type]

    def ingest_bytes(
        self,
        data: bytes,
        filename: str,
        *,
        collection: str | None = None,
        password: str | None = None,
        replace: bool | None = None,
        progress: ProgressCallback | None = None,
        document_id: str | None = None,
    ) -> IngestOutcome:
        """Ingest one file's bytes.

        Args:
            data: The file's bytes.
            filename: Display name (never used as a path).
            collection: Target collection (created if missing); default from settings.
            password: Password for an encrypted PDF.
            replace: Replace older versions with the same file name (default from settings).
            progress: Called as stages advance.
            document_id: A document row already created by :meth:`begin` (API uploads).

        Returns:
            The outcome; failures are reported in it, not raised.
        """
        upload = Upload(filename, data, document_id, password, progress)
        # One file is a bulk load of one: the same pipeline, in progress-sized groups.
        return self.ingest_many(
            [upload], collection=collection, replace=replace, group_chunks=self.progress_chunks
        )[0]

    @property
    def progress_chunks(self) -> int:
        """Chunks per embedding call when a file's progress is followed (one forward batch)."""
        return max(1, min(self.settings.embed_batch_chunks, PROGRESS_CHUNKS))

    def begin(
        self,
        data: bytes,
        filename: str,
        collection: str,
        *,
        status: str = "processing",
        extra_rows: Callable[[str], Iterable[object]] | None = None,
    ) -> DocumentInfo:
        """Create the (not yet searchable) document row and store the original bytes.

        Raises:
            DuplicateDocument: The same bytes are ready or being ingested in the
                collection (``exc.existing``).
        """
        try:
            media_type = sniff_media_type(data, filename)
        except RagError:
            media_type = "application/octet-stream"
        return self.kb.begin_document(
            collection,
            filename,
            media_type=media_type,
            size_bytes=len(data),
            sha256=file_sha256(data),
            data=data,
            status=status,
            extra_rows=extra_rows,
        )

    def ingest_many(
        self,
        files: Sequence[tuple[str, bytes] | Upload],
        *,
        collection: str | None = None,
        replace: bool | None = None,
        password: str | None = None,
        progress: ProgressCallback | None = None,
        on_outcome: Callable[[int, IngestOutcome], None] | None = None,
        group_size: int = 200,
        group_chunks: int | None = None,
    ) -> list[IngestOutcome]:
        """The one ingest path: the CLI, REST uploads, the eval loader and the benchmarks.

        A pipeline of prepare → embed → commit over groups of files: a group
        closes at ``group_size`` files or ``group_chunks`` chunks, and is
        embedded in a background thread while the main thread commits the
        previous group and prepares the next (torch releases the GIL). Many
        small files share one embedding batch; a large one is cut over
        several groups. Each document is committed through the one write
        path the moment its last chunk is embedded, so each is
        all-or-nothing and searchable as soon as it is ``ready``.

        Args:
            files: (file name, bytes) pairs or :class:`Upload` items; read
                lazily by index, so a sequence that loads each file on
                access keeps memory flat.
            collection: Target collection (created if missing).
            replace: Replace older versions with the same file name.
            password: Password tried on encrypted files (an Upload's own wins).
            progress: Called after each embedded group (chunks so far).
            on_outcome: Called with (position, outcome) as each file finishes.
            group_size: Most files per embedding group.
            group_chunks: Chunks after which a group is closed (default: the
                ``embed_batch_chunks`` setting).

        Returns:
            One outcome per file, in input order.
        """
        from concurrent.futures import Future, ThreadPoolExecutor

        report = progress or _noop
        collection = collection or self.settings.default_collection
        self.kb.create_collection(collection, exist_ok=True)
        replace = self.settings.replace_versions if replace is None else replace
        outcomes: dict[int, IngestOutcome] = {}
        announced: set[int] = set()
        total_chunks = 0
        embedded = 0

        def announce() -> None:
            for position in sorted(set(outcomes) - announced):
                announced.add(position)
                if on_outcome is not None:
                    on_outcome(position, outcomes[position])

        partial: dict[int, list[np.ndarray]] = {}  # vectors of documents split over groups

        def fail(piece: _Piece, exc: Exception) -> None:
            partial.pop(piece.position, None)
            outcomes[piece.position] = self._failure(
                piece.prep.document_id, piece.prep.filename, collection, exc
            )

        def commit(batch: list[_Piece], vectors: np.ndarray) -> None:
            finished: list[tuple[_Piece, np.ndarray]] = []
            offset = 0
            for piece in batch:
                size = piece.end - piece.start
                part = vectors[offset : offset + size]
                offset += size
                if piece.position in outcomes:
                    continue  # failed in an earlier group (cancelled, embedding error)
                try:
                    piece.report(
                        IngestProgress(
                            "embedding", piece.prep.pages, len(piece.prep.chunks), piece.end
                        )
                    )
                except Exception as exc:  # noqa: BLE001 - e.g. cancelled by its caller
                    fail(piece, exc)
                    continue
                partial.setdefault(piece.position, []).append(part)
                if piece.end < len(piece.prep.chunks):
                    continue  # the rest of this document is in a later group
                finished.append((piece, np.concatenate(partial.pop(piece.position), axis=0)))
            for piece, outcome in self._commit_group(finished, collection, replace):
                if isinstance(outcome, Exception):
                    fail(piece, outcome)
                else:
                    outcomes[piece.position] = outcome
            announce()

        groups = self._prepared_groups(
            files,
            collection,
            outcomes,
            password,
            group_size,
            group_chunks or self.settings.embed_batch_chunks,
        )
        in_flight: deque[tuple[list[_Piece], Future[np.ndarray]]] = deque()

        def finish_oldest() -> None:
            nonlocal embedded
            batch, future = in_flight.popleft()
            try:
                vectors = future.result()
            except Exception as exc:  # noqa: BLE001 - the group's files fail, not the run
                for piece in batch:
                    if piece.position not in outcomes:
                        fail(piece, exc)
                return
            kill_point("embed.batch")
            embedded += len(vectors)
            report(IngestProgress("embedding", 0, total_chunks, embedded))
            commit(batch, vectors)

        with self.kb.ingest_lock.hold(shared=True), ThreadPoolExecutor(1) as embedder:
            # The model loads (its dimension needs it) while the first groups are
            # prepared: its imports alone take seconds.
            embedder.submit(lambda: self.embedder.dimension)
            # Each group is queued for embedding as soon as it is prepared; groups are
            # committed in order once embedded, and while the embedder is busy the next
            # ones are prepared, up to MAX_GROUPS_AHEAD waiting.
            for batch in groups:
                announce()
                texts = [c.text for p in batch for c in p.prep.chunks[p.start : p.end]]
                total_chunks += len(texts)
                in_flight.append((batch, embedder.submit(self.embedder.embed_documents, texts)))
                while in_flight and (in_flight[0][1].done() or len(in_flight) > MAX_GROUPS_AHEAD):
                    finish_oldest()
            while in_flight:
                finish_oldest()
        announce()
        return [outcomes[i] for i in range(len(files))]

    def _prepared_groups(
        self,
        files: Sequence[tuple[str, bytes] | Upload],
        collection: str,
        outcomes: dict[int, IngestOutcome],
        password: str | None,
        group_size: int,
        group_chunks: int,
    ) -> Iterator[list[_Piece]]:
        """Prepare files in order and yield groups of about ``group_chunks`` chunks.

        Small files share a group; a large document is cut over several
        groups, so its embedding is reported (and can be interrupted) batch
        by batch. It is committed once its last piece is embedded.
        """
        group: list[_Piece] = []
        chunks = 0
        for position in range(len(files)):
            try:
                item = files[position]
            except OSError as exc:
                unreadable = InvalidInput(f"cannot read the file: {exc.strerror or exc}")
                outcomes[position] = _refused(f"#{position + 1}", collection, unreadable)
                continue
            except RagError as exc:  # e.g. a queued upload cancelled while its group waited
                outcomes[position] = _refused(f"#{position + 1}", collection, exc)
                continue
            upload = item if isinstance(item, Upload) else Upload(item[0], item[1])
            prep = self._prepare_file(upload, position, collection, outcomes, password)
            if prep is None:
                continue
            report = upload.progress or _noop
            start = 0
            while start < len(prep.chunks):
                end = min(len(prep.chunks), start + group_chunks - chunks)
                group.append(_Piece(position, prep, start, end, report))
                chunks += end - start
                start = end
                if len(group) >= group_size or chunks >= group_chunks:
                    yield group
                    group, chunks = [], 0
        if group:
            yield group

    def _prepare_file(
        self,
        upload: Upload,
        position: int,
        collection: str,
        outcomes: dict[int, IngestOutcome],
        password: str | None,
    ) -> _Prepared | None:
        """Check, deduplicate, create the row for, parse and chunk one file of a bulk load."""
        filename, data = display_name(upload.filename), upload.data
        doc_id = upload.document_id
        if doc_id is None:
            try:
                self.admit(data, filename, upload.password or password)
            except RagError as exc:
                outcomes[position] = _refused(filename, collection, exc)
                return None
            try:
                doc_id = self.begin(data, filename, collection).id
            except DuplicateDocument as exc:
                outcomes[position] = _existing(exc.existing, collection)  # type: ignore[arg-type]
                return None
        try:
            return self._prepare(
                data,
                filename,
                doc_id,
                upload.password or password,
                upload.progress or _noop,
                fresh=upload.document_id is None,
            )
        except Exception as exc:  # noqa: BLE001
            outcomes[position] = self._failure(doc_id, filename, collection, exc)
            return None

    def _prepare(
        self,
        data: bytes,
        filename: str,
        document_id: str,
        password: str | None,
        report: ProgressCallback,
        *,
        fresh: bool = False,
    ) -> _Prepared:
        """Parse, clean and chunk (no store is touched but the document's status)."""
        if not fresh:  # a queued upload: say it is being worked on
            self.kb.update_document(document_id, status="processing")
        media_type = sniff_media_type(data, filename, password)
        report(IngestProgress("parsing"))
        parser = get_parser(  # pictures in DOCX/PPTX/ODT/EPUB are OCR'd
            media_type, ocr=self.ocr, max_pictures=self.settings.ocr_max_images
        )
        if isinstance(parser, PdfParser):  # the one format read page by page (OCR included)
            parser = PdfParser(ocr=self.ocr, tables=self.settings.pdf_tables)

            def page_done(parsed_pages: int, _: int) -> None:
                report(IngestProgress("parsing", pages_parsed=parsed_pages))

            parsed = parser.parse(data, password=password, on_page=page_done)
        else:
            parsed = parser.parse(data, password=password)
        for warning in parsed.warnings:
            log.debug("parse warning doc_id=%s %s", document_id, warning)
        report(IngestProgress("chunking", pages_parsed=parsed.page_count))
        clean = clean_pages(parsed.pages)
        confidence = {page.number: page.ocr_confidence for page in parsed.pages}
        chunks = [
            replace(
                chunk,
                page_breaks=_page_breaks(clean, chunk),
                ocr_confidence=_ocr_confidence(confidence, chunk),
            )
            for chunk in (self.chunker.chunk(clean) if clean.text.strip() else [])
        ]
        if not chunks:
            raise EmptyDocument(f"{filename}: no extractable text after cleaning")
        return _Prepared(document_id, filename, media_type, parsed.page_count, chunks)

    def _commit_group(
        self, finished: list[tuple[_Piece, np.ndarray]], collection: str, replace: bool
    ) -> list[tuple[_Piece, IngestOutcome | Exception]]:
        """Commit the documents whose last chunk is embedded, in one transaction.

        A file that replaces another of the same name in this group starts a
        new transaction (it must see the first one ``ready``). If a transaction
        fails, its documents are committed one by one, so one bad document
        (deleted meanwhile) fails alone.
        """
        results: list[tuple[_Piece, IngestOutcome | Exception]] = []
        batch: list[tuple[_Piece, ReadyDocument]] = []

        def flush() -> None:
            if len(batch) == 1:
                results.append((batch[0][0], self._commit_alone(*batch[0], collection)))
            elif batch:
                try:
                    docs = self.kb.commit_documents(collection, [ready for _, ready in batch])
                except Exception:  # noqa: BLE001 - retried one by one: each fails alone
                    results.extend((p, self._commit_alone(p, r, collection)) for p, r in batch)
                else:
                    results.extend(
                        (p, self._outcome(p, r, doc, collection))
                        for (p, r), doc in zip(batch, docs, strict=True)
                    )
            batch.clear()

        for piece, vectors in finished:
            prep = piece.prep
            n = len(prep.chunks)
            try:
                piece.report(IngestProgress("indexing", prep.pages, n, chunks_embedded=n))
            except Exception as exc:  # noqa: BLE001 - e.g. cancelled by its caller
                results.append((piece, exc))
                continue
            if replace and any(p.prep.filename == prep.filename for p, _ in batch):
                flush()
            old = (
                tuple(
                    d.id
                    for d in self.kb.ready_versions(collection, prep.filename)
                    if d.id != prep.document_id
                )
                if replace
                else ()
            )
            batch.append(
                (
                    piece,
                    ReadyDocument(
                        prep.document_id, prep.chunks, vectors, prep.pages, old, prep.media_type
                    ),
                )
            )
        flush()
        return results

    def _commit_alone(
        self, piece: _Piece, ready: ReadyDocument, collection: str
    ) -> IngestOutcome | Exception:
        try:
            doc = self.kb.commit_documents(collection, [ready])[0]
        except Exception as exc:  # noqa: BLE001 - reported as this file's failure
            return exc
        return self._outcome(piece, ready, doc, collection)

    @staticmethod
    def _outcome(
        piece: _Piece, ready: ReadyDocument, doc: DocumentInfo, collection: str
    ) -> IngestOutcome | Exception:
        n = len(ready.chunks)
        try:
            piece.report(IngestProgress("done", piece.prep.pages, n, n))
        except Exception as exc:  # noqa: BLE001 - e.g. cancelled by its caller
            return exc
        return IngestOutcome(
            filename=piece.prep.filename,
            collection=collection,
            action="replaced" if ready.replaces else "created",
            status=doc.status,
            document_id=doc.id,
            pages=doc.pages,
            chunks=doc.chunks,
        )

    def _failure(
        self, document_id: str, filename: str, collection: str, exc: Exception
    ) -> IngestOutcome:
        """Mark the document failed with the reason and say so in the outcome."""
        if isinstance(exc, RagError):
            message, code = exc.message, exc.code
            log.info("ingest failed doc_id=%s code=%s reason=%s", document_id, code, message)
        else:
            log.exception("ingest crashed doc_id=%s", document_id)
            message = f"internal error while ingesting: {type(exc).__name__}: {exc}"
            code = "internal_error"
        try:
            self.kb.fail_document(document_id, message)
        except DocumentNotFound:
            pass  # deleted (or its collection) while being ingested: nothing to mark
        return IngestOutcome(
            filename=filename,
            collection=collection,
            action="failed",
            status="failed",
            document_id=document_id,
            error=message,
            error_code=code,
        )


def build_ingest_service(services: Services) -> IngestService:
    """The ingest service over ``services``: its knowledge base, default embedder and settings.

    The one place the CLI, the API and the evaluations build it, so a new
    collaborator of :class:`IngestService` is wired here only.
    """
    return IngestService(services.kb, services.embedder, services.settings.ingest)
