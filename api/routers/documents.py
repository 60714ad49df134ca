"""Documents: upload (queued ingestion), list, inspect, download, delete."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from fastapi import Path as FastApiPath
from fastapi.concurrency import run_in_threadpool
from pydantic import BeforeValidator

from api.access import Access
from api.routers import MULTIPART_BODY, State
from api.schemas import (
    COLLECTION_PATTERN,
    ERROR_RESPONSES,
    MAX_SQL_INT,
    ChunkList,
    DocumentDeleted,
    DocumentList,
    DocumentOut,
    ErrorResponse,
    PageView,
    UploadAccepted,
)
from api.worker import UploadedFile
from ingest.service import display_name
from ingest.sniff import SUPPORTED_MEDIA_TYPES
from rag.errors import InvalidInput, PageNotFound, ParseError

router = APIRouter(tags=["documents"], responses=ERROR_RESPONSES)

DocumentStatusName = Annotated[
    str | None,
    Query(pattern="^(pending|processing|ready|failed)$", description="Filter by status."),
]


def _form_boolean(value: object) -> object:
    """A form field's boolean is spelled 'true' or 'false' (as JSON and the schema spell it).

    Pydantic would also take 'yes', 'on' or '0', which the schema does not allow;
    'null' or an empty value mean "not given", as an absent field does.
    """
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "null"):
            return None
        if text not in ("true", "false"):
            raise ValueError(f"must be 'true' or 'false', got {value!r}")
        return text == "true"
    return value


FormBool = Annotated[bool | None, BeforeValidator(_form_boolean)]
Offset = Annotated[int, Query(ge=0, le=MAX_SQL_INT, description="Rows to skip.")]
Limit = Annotated[int, Query(ge=1, le=1000, description="Rows to return.")]


@router.post(
    "/documents",
    status_code=202,
    response_model=UploadAccepted,
    responses={
        400: {"model": ErrorResponse, "description": "The body is not valid multipart data"},
        413: {"model": ErrorResponse, "description": "A file is over the size limit"},
        415: {
            "model": ErrorResponse,
            "description": "A file is not a supported type (PDF, Office, CSV, EPUB, ODT, "
            "text, Markdown, HTML), or the body is not multipart/form-data",
        },
        422: {
            "model": ErrorResponse,
            "description": "Invalid input, or a file that is empty, encrypted or corrupt",
        },
    },
    dependencies=MULTIPART_BODY,
)
async def upload_documents(
    request: Request,
    state: State,
    access: Access,
    files: Annotated[
        list[UploadFile],
        File(min_length=1, description="One or more files (repeat the field)."),
    ],
    collection: Annotated[
        str | None,
        Form(
            # Empty, like absent, means the default collection (a form has no null).
            pattern=rf"^(?:{COLLECTION_PATTERN.removeprefix('^').removesuffix('$')})?$",
            description="Target collection (letters, digits, '_', '.' or '-'); empty or "
            "absent: the default collection.",
        ),
    ] = None,
    password: Annotated[
        str | None,
        Form(description="Password of encrypted PDF or Office files (empty: none)."),
    ] = None,
    replace: Annotated[
        FormBool,
        Form(description="Replace older versions with the same file name ('true' or 'false')."),
    ] = None,
) -> dict:
    """Validate the files and queue their ingestion; poll ``GET /jobs/{job_id}``.

    Every file is checked (size, type, emptiness, encryption of Office files)
    before anything is queued: if one is refused, the response is that file's
    error, no job is created and nothing is stored. Bytes already in the
    collection (ready or still being ingested) return that document's job.
    """
    form = await request.form()  # already parsed by FastAPI; cached on the request
    repeated = [
        name for name in ("collection", "password", "replace") if len(form.getlist(name)) > 1
    ]
    if repeated:
        raise InvalidInput(
            f"form field {repeated[0]!r} was sent more than once; send it at most once",
            details={"field": repeated[0]},
        )
    target = access.upload_collection(collection or None)
    uploads = [UploadedFile(f.filename or "", await f.read()) for f in files]
    jobs = await run_in_threadpool(
        state.worker.accept, uploads, target, password=password or None, replace=replace
    )
    return {"jobs": jobs}


@router.get("/documents", response_model=DocumentList)
async def list_documents(
    state: State,
    access: Access,
    collection: Annotated[str | None, Query(description="Only this collection.")] = None,
    status: DocumentStatusName = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> dict:
    """Documents the API key may see, newest first, with the total matching count."""
    kb = state.services.kb
    docs, total = await run_in_threadpool(
        lambda: access.list_documents(kb, collection, status, offset=offset, limit=limit)
    )
    return {"documents": [d.to_dict() for d in docs], "total": total}


@router.get("/documents/{doc_id}", response_model=DocumentOut)
async def get_document(doc_id: str, state: State, access: Access) -> dict:
    """Metadata of one document."""
    return (await run_in_threadpool(access.document, state.services.kb, doc_id)).to_dict()


@router.get("/documents/{doc_id}/chunks", response_model=ChunkList)
async def document_chunks(
    state: State,
    access: Access,
    doc_id: str,
    offset: Offset = 0,
    limit: Limit = 100,
) -> dict:
    """A document's chunks in order, with the total count."""
    kb = state.services.kb

    def read() -> tuple[list, int]:
        doc = access.document(kb, doc_id)
        return kb.document_chunks(doc_id, offset=offset, limit=limit), doc.chunks

    chunks, total = await run_in_threadpool(read)
    return {"chunks": [c.to_dict() for c in chunks], "total": total}


@router.get(
    "/documents/{doc_id}/file",
    response_class=Response,
    responses={
        200: {
            "description": "The original bytes, with the media type sniffed at upload",
            "content": {
                media: {"schema": {"type": "string", "format": "binary"}}
                for media in (*SUPPORTED_MEDIA_TYPES, "application/octet-stream")
            },
        }
    },
)
async def document_file(doc_id: str, state: State, access: Access) -> Response:
    """The original file, with its media type and name (from any replica's blob store)."""
    kb = state.services.kb
    doc = await run_in_threadpool(access.document, kb, doc_id)
    data = await run_in_threadpool(kb.document_bytes, doc_id)
    name = display_name(doc.filename)  # rows stored before names were cleaned
    quoted = quote(name)
    disposition = f'attachment; filename="{name}"'
    if quoted != name:  # RFC 6266: non-ASCII names are percent-encoded UTF-8
        disposition = f"attachment; filename*=utf-8''{quoted}"
    return Response(
        data,
        media_type=doc.media_type or "application/octet-stream",
        headers={"Content-Disposition": disposition},
    )


PageNumber = Annotated[int, FastApiPath(ge=1, le=MAX_SQL_INT, description="Page, from 1.")]


@router.get(
    "/documents/{doc_id}/pages/{page}.png",
    response_class=Response,
    responses={200: {"description": "The PDF page as PNG", "content": {"image/png": {}}}},
)
async def document_page_image(
    doc_id: str,
    page: PageNumber,
    state: State,
    access: Access,
    scale: Annotated[
        float, Query(ge=0.25, le=4.0, description="Pixels per PDF point (1.5 = 108 dpi).")
    ] = 1.5,
) -> Response:
    """One page of a PDF rendered as PNG (for the viewer); 404 for other formats."""
    from ingest.page_view import render_page_png, renders_as_image

    kb = state.services.kb

    def render() -> bytes:
        doc = access.document(kb, doc_id)
        if not renders_as_image(doc.media_type):
            raise PageNotFound(
                f"document {doc_id!r} is {doc.media_type or 'not a PDF'}; only PDF pages "
                f"render as images: GET /documents/{doc_id}/pages/{page} gives the page's text"
            )
        return render_page_png(kb.document_bytes(doc_id), page, scale=scale)

    png = await run_in_threadpool(render)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})


@router.get("/documents/{doc_id}/pages/{page}", response_model=PageView)
async def document_page(
    doc_id: str,
    page: PageNumber,
    state: State,
    access: Access,
    chunk_id: Annotated[
        int | None,
        Query(ge=1, le=MAX_SQL_INT, description="The cited chunk, to be highlighted."),
    ] = None,
) -> dict:
    """A page's text with the cited chunk marked, and for a PDF its image and the chunk's boxes."""
    from ingest.page_view import highlight_boxes, page_text, renders_as_image, text_on_page

    kb = state.services.kb

    def view() -> dict:
        doc = access.document(kb, doc_id)
        if not 1 <= page <= max(doc.pages, 1):
            raise PageNotFound(
                f"the document has pages 1 to {max(doc.pages, 1)}; there is no page {page}"
            )
        chunks = kb.document_chunks(doc_id)
        shown = page_text(chunks, page, chunk_id)
        image_url, boxes = None, []
        if renders_as_image(doc.media_type):
            image_url = f"/documents/{doc_id}/pages/{page}.png"
            cited = next((text_on_page(c, page) for c in chunks if c.id == chunk_id), None)
            if cited is not None:
                try:
                    data = kb.document_bytes(doc_id)
                    boxes = [list(b) for b in highlight_boxes(data, page, cited)]
                except ParseError:
                    image_url = None  # encrypted or damaged: the text view still works
        return {
            "document_id": doc.id,
            "filename": doc.filename,
            "media_type": doc.media_type,
            "page": page,
            "page_count": doc.pages,
            "text": shown.text,
            "highlight_start": shown.highlight_start,
            "highlight_end": shown.highlight_end,
            "image_url": image_url,
            "boxes": boxes,
        }

    return await run_in_threadpool(view)


@router.delete("/documents/{doc_id}", response_model=DocumentDeleted)
async def delete_document(doc_id: str, state: State, access: Access) -> dict:
    """Delete a document from the database and both indexes."""
    kb = state.services.kb
    await run_in_threadpool(access.document, kb, doc_id)
    doc = await run_in_threadpool(kb.delete_document, doc_id)
    return {"deleted": doc.id}
