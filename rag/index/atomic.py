"""Write a file so that a crash leaves either the old or the new content, never a mix.

The recipe: write a temp file in the same folder (so the rename stays on one
file system), flush and fsync it, ``os.replace`` it over the target (atomic on
POSIX and Windows), then fsync the folder so the rename itself is durable.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder; its rename is durable enough
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path | str, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` atomically by letting ``write`` fill a temp file beside it.

    Args:
        path: The target file; its folder is created when missing.
        write: Called once with the open, seekable temp file (binary mode).

    Raises:
        Whatever ``write`` or the file system raises; the temp file is removed
        and the old ``path`` (if any) is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    fsync_dir(target.parent)


def atomic_write_bytes(path: Path | str, data: bytes | bytearray | memoryview) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""

    def write(handle: BinaryIO) -> None:
        handle.write(data)

    atomic_write(path, write)
