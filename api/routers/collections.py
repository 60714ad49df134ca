"""Collections: list, create, delete, re-embed."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from api.access import Access
from api.routers import JSON_BODY, State
from api.schemas import (
    ERROR_RESPONSES,
    JSON_BODY_RESPONSES,
    CollectionCreate,
    CollectionDeleted,
    CollectionList,
    CollectionOut,
    CollectionReembed,
    ErrorResponse,
    JobOut,
)

router = APIRouter(tags=["collections"], responses=ERROR_RESPONSES)


@router.get("/collections", response_model=CollectionList)
async def list_collections(state: State, access: Access) -> dict:
    """The collections the API key may use, with their document and chunk counts."""
    infos = access.visible(await run_in_threadpool(state.services.kb.list_collections))
    return {
        "collections": [info.to_dict() for info in infos],
        "default_collection": access.default_collection,
    }


@router.post(
    "/collections",
    status_code=201,
    response_model=CollectionOut,
    responses={
        **JSON_BODY_RESPONSES,
        409: {"model": ErrorResponse, "description": "Collection exists"},
    },
    dependencies=JSON_BODY,
)
async def create_collection(body: CollectionCreate, state: State, access: Access) -> dict:
    """Create an empty collection."""
    access.check_collection(body.name)
    info = await run_in_threadpool(state.services.kb.create_collection, body.name)
    return info.to_dict()


@router.delete(
    "/collections/{name}",
    response_model=CollectionDeleted,
    responses={409: {"model": ErrorResponse, "description": "A running ingestion did not stop"}},
)
async def delete_collection(name: str, state: State, access: Access) -> dict:
    """Delete a collection with its documents, chunks and index files.

    Its queued ingest jobs are cancelled and a running one is stopped first.
    """
    access.check_collection(name)
    count = await run_in_threadpool(state.worker.delete_collection, name)
    return {"deleted": name, "documents": count}


@router.post(
    "/collections/{name}/reembed",
    status_code=202,
    response_model=JobOut,
    responses=JSON_BODY_RESPONSES,
    dependencies=JSON_BODY,
)
async def reembed_collection(
    name: str, body: CollectionReembed, state: State, access: Access
) -> dict:
    """Remake every vector of the collection with another embedding model, in the background.

    Answers 202 with a job (``GET /jobs/{id}``: ``chunks_embedded`` of
    ``chunks_total``). The old vectors answer queries until the new ones
    replace them in one step; an interrupted job leaves the old ones.
    """
    access.check_collection(name)
    return await run_in_threadpool(state.reembeds.submit, name, body.model)
