"""atomic_write: all or nothing, no temp files left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.index.atomic import atomic_write, atomic_write_bytes


@pytest.mark.unit
def test_writes_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "file.bin"
    atomic_write_bytes(path, b"first")
    atomic_write(path, lambda handle: handle.write(b"second"))
    assert path.read_bytes() == b"second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["file.bin"]


@pytest.mark.unit
def test_failure_keeps_the_old_file_and_removes_the_temp(tmp_path: Path) -> None:
    path = tmp_path / "file.bin"
    atomic_write_bytes(path, b"old")

    def half_write(handle) -> None:  # type: ignore[no-untyped-def]
        handle.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, half_write)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]
