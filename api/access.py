"""Which collections the caller's API key may reach: resolved once per request, checked here.

Keys in ``api_keys`` are unrestricted (admin). Keys in ``key_collections`` are
tenant keys: each sees, searches and changes only its listed collections. The
:class:`ApiKeyMiddleware <api.security.ApiKeyMiddleware>` resolves the key to
a :class:`CallerAccess` and every router takes it through the :data:`Access`
dependency, so the scope rules live in this module alone.

Anything outside a key's scope answers exactly as if it did not exist (404
with the same body an unknown id gets), so a tenant cannot probe for another
tenant's collections, documents, jobs or chat sessions. Operations routes
(``/readyz``, ``/metrics``) report on every collection and answer 403 to a
tenant key.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.types import Scope

from api.schemas import MAX_SQL_INT
from rag.errors import (
    ChatNotFound,
    CollectionNotFound,
    DocumentNotFound,
    Forbidden,
    JobNotFound,
    Unauthorized,
)
from rag.knowledge_base import KnowledgeBase
from rag.records import CollectionInfo, DocumentInfo
from rag.settings import Settings

# Where the middleware leaves the resolved access in the ASGI scope.
SCOPE_KEY = "rag.access"


def document_not_found(doc_id: str) -> DocumentNotFound:
    """The error an unknown document id gets (same text as the knowledge base's)."""
    return DocumentNotFound(f"no document with id {doc_id!r}; list them with `rag docs list`")


def job_not_found(job_id: str) -> JobNotFound:
    """The error an unknown job id gets (same text as the ingest worker's)."""
    return JobNotFound(f"no ingest job with id {job_id!r}")


def chat_not_found(session_id: str) -> ChatNotFound:
    """The error an unknown chat session gets (same text as the chat store's)."""
    return ChatNotFound(
        f"no chat session with id {session_id!r}; start one by posting to /chat "
        "without a session_id"
    )


@dataclass(frozen=True)
class CallerAccess:
    """What one request's API key may reach.

    Attributes:
        collections: The key's collections in configured order, or None for an
            unrestricted key (or when no keys are configured).
        default_collection: Where an upload naming no collection goes: the
            configured default for unrestricted keys, the key's first
            collection for a tenant key.
    """

    collections: tuple[str, ...] | None
    default_collection: str

    @property
    def unrestricted(self) -> bool:
        """True for admin keys and for servers without keys."""
        return self.collections is None

    def allows(self, name: str) -> bool:
        """True when the key may use the collection ``name``."""
        return self.collections is None or name in self.collections

    def check_collection(self, name: str) -> str:
        """``name`` if the key may use it.

        Raises:
            CollectionNotFound: Outside the key's scope, whether it exists or not.
        """
        if not self.allows(name):
            assert self.collections is not None
            raise CollectionNotFound(
                f"no collection named {name!r} for this API key; its collections are "
                f"{', '.join(self.collections)}"
            )
        return name

    def require_admin(self) -> None:
        """Pass for unrestricted keys.

        Raises:
            Forbidden: For a tenant key.
        """
        if not self.unrestricted:
            raise Forbidden(
                "this route reports on every collection and needs an unrestricted API key "
                "(one listed in RAG_API__API_KEYS); this key is limited to collections"
            )

    def visible(self, infos: Iterable[CollectionInfo]) -> list[CollectionInfo]:
        """The collections of ``infos`` the key may see, in their order."""
        return [info for info in infos if self.allows(info.name)]

    def upload_collection(self, name: str | None) -> str | None:
        """The collection an upload goes to (None: the server's default, for admin keys).

        Raises:
            CollectionNotFound: A named collection outside the key's scope.
        """
        if name:
            return self.check_collection(name)
        return None if self.unrestricted else self.default_collection

    def search_collections(
        self, kb: KnowledgeBase, names: Sequence[str], *, existing_only: bool = False
    ) -> tuple[str, ...]:
        """The collections a question searches.

        An unrestricted key gets ``names`` as given (empty: every collection).
        A tenant key must name only its own collections; naming none means all
        of its collections that exist, never every collection of the server.

        Args:
            kb: The knowledge base (to see which collections exist).
            names: The collections the request or the chat session names.
            existing_only: Drop named collections that do not exist (a chat
                session started over the key's whole scope).

        Raises:
            CollectionNotFound: A name outside the scope, or a tenant key none
                of whose collections exists yet.
        """
        if self.collections is None:
            return tuple(names)
        for name in names:
            self.check_collection(name)
        if names and not existing_only:
            return tuple(names)
        wanted = names or self.collections
        existing = {info.name for info in kb.list_collections()}
        found = tuple(n for n in wanted if n in existing)
        if not found:
            raise CollectionNotFound(
                f"none of this API key's collections ({', '.join(wanted)}) exists yet; "
                "upload a document to create one"
            )
        return found

    def session_collections(self, names: Sequence[str]) -> list[str]:
        """What a new chat session stores: the named collections, or the key's scope.

        Storing a tenant's scope (rather than "all") is what later ties the
        session to the keys that may read it (:meth:`check_session`).
        """
        if names or self.collections is None:
            return list(names)
        return list(self.collections)

    def check_session(self, session_id: str, stored: Sequence[str]) -> None:
        """Pass if the key may use a chat session started over ``stored`` collections.

        A session over every collection (stored empty) belongs to unrestricted
        keys only.

        Raises:
            ChatNotFound: The session reaches outside the key's scope.
        """
        if self.collections is None:
            return
        if not stored or not all(self.allows(name) for name in stored):
            raise chat_not_found(session_id)

    def document(self, kb: KnowledgeBase, doc_id: str) -> DocumentInfo:
        """The document, if it is in one of the key's collections.

        Raises:
            DocumentNotFound: Unknown, or in a collection outside the scope.
        """
        doc = kb.get_document(doc_id)
        if not self.allows(doc.collection):
            raise document_not_found(doc_id)
        return doc

    def check_job(self, job: dict[str, Any]) -> dict[str, Any]:
        """The job, if its collection is in the key's scope.

        Raises:
            JobNotFound: The job belongs to a collection outside the scope.
        """
        if not self.allows(job["collection"]):
            raise job_not_found(job["id"])
        return job

    def list_documents(
        self,
        kb: KnowledgeBase,
        collection: str | None,
        status: str | None,
        *,
        offset: int,
        limit: int,
    ) -> tuple[list[DocumentInfo], int]:
        """Documents the key may see, newest first, and their total count.

        A tenant key naming no collection gets its collections merged in the
        knowledge base's own order (newest first, then id).

        Raises:
            CollectionNotFound: A named collection outside the scope or absent.
        """
        if collection is not None or self.collections is None:
            if collection is not None:
                self.check_collection(collection)
            return kb.list_documents(collection, status, offset=offset, limit=limit)
        existing = {info.name for info in kb.list_collections()}
        merged: list[DocumentInfo] = []
        total = 0
        for name in self.collections:
            if name not in existing:
                continue
            # The first offset + limit of each collection hold the merged page.
            docs, count = kb.list_documents(
                name, status, offset=0, limit=min(offset + limit, MAX_SQL_INT)
            )
            merged.extend(docs)
            total += count
        merged.sort(key=lambda d: d.id)
        merged.sort(key=lambda d: d.created_at, reverse=True)
        return merged[offset : offset + limit], total


@dataclass(frozen=True)
class KeyPolicy:
    """The configured keys and what each may reach.

    Args:
        admin_keys: Unrestricted keys.
        tenant_keys: Key -> its collections, in order.
        default_collection: Default collection of unrestricted uploads.
    """

    admin_keys: tuple[str, ...]
    tenant_keys: tuple[tuple[str, tuple[str, ...]], ...]
    default_collection: str

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyPolicy:
        """The policy of ``settings.api`` (``api_keys`` and ``key_collections``)."""
        api = settings.api
        return cls(
            admin_keys=tuple(k for k in api.api_keys if k),
            tenant_keys=tuple(
                (key, tuple(dict.fromkeys(names))) for key, names in api.key_collections.items()
            ),
            default_collection=settings.ingest.default_collection,
        )

    @property
    def enabled(self) -> bool:
        """True when any key is configured (every non-public route then needs one)."""
        return bool(self.admin_keys or self.tenant_keys)

    def unrestricted(self) -> CallerAccess:
        """The access of an admin key, or of every caller when no keys are set."""
        return CallerAccess(None, self.default_collection)

    def resolve(self, token: str | None) -> CallerAccess | None:
        """The access of a bearer token (None for a missing or unknown key).

        Every configured key is compared in constant time, whatever matches,
        so the timing reveals neither which key matched nor its kind.
        """
        if not self.enabled:
            return self.unrestricted()
        if token is None:
            return None
        given = token.encode()
        found: CallerAccess | None = None
        for key in self.admin_keys:
            if hmac.compare_digest(given, key.encode()) and found is None:
                found = self.unrestricted()
        for key, names in self.tenant_keys:
            if hmac.compare_digest(given, key.encode()) and found is None:
                found = CallerAccess(names, names[0])
        return found


def attach_access(scope: Scope, access: CallerAccess) -> None:
    """Record the request's access for :func:`get_access` (called by the key middleware)."""
    scope[SCOPE_KEY] = access


def get_access(request: Request) -> CallerAccess:
    """FastAPI dependency: what the caller's API key may reach.

    Raises:
        Unauthorized: No access was resolved (the key middleware is not
            installed): closed rather than open.
    """
    access = request.scope.get(SCOPE_KEY)
    if not isinstance(access, CallerAccess):
        raise Unauthorized("no API key was checked for this request; the server refuses it")
    return access


Access = Annotated[CallerAccess, Depends(get_access)]


def require_admin(access: Access) -> None:
    """FastAPI dependency: the route needs an unrestricted key (403 for tenant keys)."""
    access.require_admin()


ADMIN_ONLY = [Depends(require_admin)]
