"""Locks: a readers-writer lock (many searches, one index mutation) and inter-process locks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol


class ReadWriteLock:
    """Writer-preferring readers-writer lock (a waiting writer blocks new readers)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        """Hold the lock shared."""
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        """Hold the lock exclusively."""
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class InterProcessLock(Protocol):
    """A lock other processes see: :class:`ProcessLock` (one host) or a database advisory lock."""

    def hold(self, *, shared: bool = False) -> AbstractContextManager[None]:
        """Hold the lock, waiting for it (re-entrant within a thread)."""
        ...

    def try_exclusive(self) -> bool:
        """Take the lock exclusively if nobody holds it; True on success (call release)."""
        ...

    def release(self) -> None:
        """Release a lock taken by :meth:`try_exclusive`."""
        ...


class ProcessLock:
    """An advisory file lock shared between processes (fcntl.flock).

    Used twice: writers take ``writer.lock`` exclusively around each commit, so
    two processes never write index files at once; ingesting processes hold
    ``ingest.lock`` shared, so start-up recovery in another process can tell
    that a ``processing`` document is still being worked on.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

    def _fd(self) -> int:
        import os

        fd = getattr(self._local, "fd", None)
        if fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            self._local.fd = fd
            self._local.depth = 0
        return fd

    @contextmanager
    def hold(self, *, shared: bool = False) -> Iterator[None]:
        """Hold the lock (re-entrant within a thread)."""
        import fcntl

        fd = self._fd()
        if self._local.depth == 0:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        self._local.depth += 1
        try:
            yield
        finally:
            self._local.depth -= 1
            if self._local.depth == 0:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def try_exclusive(self) -> bool:
        """Take the lock exclusively if nobody holds it; True on success (call release)."""
        import fcntl

        fd = self._fd()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self._local.depth = 1
        return True

    def release(self) -> None:
        """Release a lock taken by :meth:`try_exclusive`."""
        import fcntl

        self._local.depth = 0
        fcntl.flock(self._fd(), fcntl.LOCK_UN)
