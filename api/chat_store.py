"""Chat sessions and their messages in SQL (so a restart keeps conversations)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from rag.db.models import ChatMessage, ChatSession, new_id, utcnow
from rag.errors import ChatNotFound
from rag.types import ChatTurn


class ChatStore:
    """Create, read, extend and delete chat sessions.

    Args:
        sessions: The knowledge base's SQLAlchemy session factory.
        history_turns: Most recent messages handed to the pipeline as history.
    """

    def __init__(self, sessions: sessionmaker[Session], history_turns: int = 20) -> None:
        self.sessions = sessions
        self.history_turns = history_turns

    def create(self, collections: Sequence[str] = (), session_id: str | None = None) -> str:
        """Start a session (with a chosen id, or a new one); returns its id."""
        with self.sessions.begin() as session:
            row = ChatSession(id=session_id or new_id(), collections=list(collections))
            session.add(row)
            session.flush()
            return row.id

    def _get(self, session: Session, session_id: str) -> ChatSession:
        row = session.get(ChatSession, session_id)
        if row is None:
            raise ChatNotFound(
                f"no chat session with id {session_id!r}; start one by posting to /chat "
                "without a session_id"
            )
        return row

    def collections(self, session_id: str) -> list[str]:
        """The collections a session was started with (ChatNotFound if unknown)."""
        with self.sessions() as session:
            return list(self._get(session, session_id).collections or [])

    def history(self, session_id: str) -> list[ChatTurn]:
        """The last messages as chat turns, oldest first."""
        with self.sessions() as session:
            self._get(session, session_id)
            rows = session.scalars(
                select(ChatMessage)
                .where(ChatMessage.session_id == session_id)
                .order_by(ChatMessage.id.desc())
                .limit(self.history_turns)
            ).all()
            return [ChatTurn(role=r.role, content=r.content) for r in reversed(rows)]

    def messages(self, session_id: str) -> list[dict[str, Any]]:
        """All messages of a session, oldest first, as JSON-ready dicts."""
        with self.sessions() as session:
            row = self._get(session, session_id)
            return [
                {
                    "role": m.role,
                    "content": m.content,
                    "citations": list(m.citations or []),
                    "flags": dict(m.flags or {}),
                    "created_at": m.created_at.isoformat(),
                }
                for m in row.messages
            ]

    def append_exchange(
        self,
        session_id: str,
        question: str,
        answer: str,
        citations: list[dict[str, Any]],
        flags: dict[str, Any],
        *,
        collections: Sequence[str] | None = None,
    ) -> None:
        """Store a question and its answer together (one transaction).

        With ``collections`` the session is created first (a new session is
        only stored once its first answer exists).
        """
        with self.sessions.begin() as session:
            if collections is not None:
                session.add(ChatSession(id=session_id, collections=list(collections)))
                session.flush()
            row = self._get(session, session_id)
            session.add(ChatMessage(session_id=session_id, role="user", content=question))
            session.add(
                ChatMessage(
                    session_id=session_id,
                    role="assistant",
                    content=answer,
                    citations=citations,
                    flags=flags,
                )
            )
            row.updated_at = utcnow()

    def delete(self, session_id: str) -> None:
        """Delete a session and its messages (ChatNotFound if unknown)."""
        with self.sessions.begin() as session:
            row = self._get(session, session_id)
            session.delete(row)
