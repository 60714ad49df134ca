"""A PostgreSQL advisory lock with :class:`rag.locks.ProcessLock`'s interface.

Replicas on different hosts share no file system, so the lock that tells
"someone is ingesting" must live in the database they share. A session-level
advisory lock is held by one pooled connection for as long as it is held, and
PostgreSQL releases it when that connection ends — also when its process is
killed — so a dead replica never leaves it behind.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, text

# The first key of every advisory lock this project takes (ASCII "RAG" + 2), so
# they never collide with an application sharing the database.
_NAMESPACE = 0x52414702
INGEST_LOCK_KEY = 1  # "someone is ingesting" (rag.knowledge_base)


class AdvisoryLock:
    """Shared/exclusive lock ``key`` across every process connected to the database.

    Re-entrant within a thread, like :class:`rag.locks.ProcessLock`.
    """

    def __init__(self, engine: Engine, key: int) -> None:
        self.engine = engine
        self.key = key
        self._local = threading.local()

    def _take(self, statement: str) -> tuple[Connection, object]:
        conn = self.engine.connect()
        try:
            value = conn.execute(
                text(statement), {"namespace": _NAMESPACE, "key": self.key}
            ).scalar()
            conn.commit()  # a session-level lock outlives the transaction
        except BaseException:
            conn.close()
            raise
        return conn, value

    def _drop(self, shared: bool) -> None:
        conn: Connection = self._local.conn
        self._local.conn = None
        self._local.depth = 0
        try:
            unlock = "pg_advisory_unlock_shared" if shared else "pg_advisory_unlock"
            conn.execute(
                text(f"SELECT {unlock}(:namespace, :key)"),
                {"namespace": _NAMESPACE, "key": self.key},
            )
            conn.commit()
        finally:
            conn.close()

    @contextmanager
    def hold(self, *, shared: bool = False) -> Iterator[None]:
        """Hold the lock, waiting for it (re-entrant within a thread)."""
        if getattr(self._local, "depth", 0) == 0:
            lock = "pg_advisory_lock_shared" if shared else "pg_advisory_lock"
            self._local.conn, _ = self._take(f"SELECT {lock}(:namespace, :key)")
            self._local.shared = shared
            self._local.depth = 0
        self._local.depth += 1
        try:
            yield
        finally:
            self._local.depth -= 1
            if self._local.depth == 0:
                self._drop(self._local.shared)

    def try_exclusive(self) -> bool:
        """Take the lock exclusively if nobody holds it; True on success (call release)."""
        conn, taken = self._take("SELECT pg_try_advisory_lock(:namespace, :key)")
        if not taken:
            conn.close()
            return False
        self._local.conn, self._local.shared, self._local.depth = conn, False, 1
        return True

    def release(self) -> None:
        """Release a lock taken by :meth:`try_exclusive`."""
        self._drop(shared=False)
