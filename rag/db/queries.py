"""Queries more than one module runs against the knowledge base's rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import InstrumentedAttribute

from rag.db.models import ChunkRow, Document, DocumentStatus


def ready_chunks(collection_id: int, *columns: InstrumentedAttribute[Any]) -> Select[Any]:
    """``columns`` of every chunk of a collection's ready documents, by chunk id."""
    return (
        select(*columns)
        .join(Document, ChunkRow.document_id == Document.id)
        .where(
            ChunkRow.collection_id == collection_id,
            Document.status == DocumentStatus.READY.value,
        )
        .order_by(ChunkRow.id)
    )
