"""Collections: list, create, delete."""

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
    ErrorResponse,
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
