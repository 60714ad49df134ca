"""The fault-injection plan is parsed strictly and kills only at the planned pass."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from rag import faults

pytestmark = pytest.mark.unit


def test_unknown_point_or_bad_pass_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    for spec in ("nowhere:1", "commit.sql_done:0"):
        monkeypatch.setenv(faults.ENV_VAR, spec)
        faults.reset()
        with pytest.raises(ValueError, match=faults.ENV_VAR):
            faults.kill_point("commit.sql_done")
    monkeypatch.delenv(faults.ENV_VAR)
    faults.reset()
    faults.kill_point("commit.sql_done")  # unset: nothing happens


def test_kills_at_the_planned_pass_only() -> None:
    code = (
        "from rag import faults\n"
        "for i in range(1, 6):\n"
        "    print(i, flush=True)\n"
        "    faults.kill_point('embed.batch')\n"
    )
    env = {**os.environ, faults.ENV_VAR: "embed.batch:3"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL
    assert proc.stdout.split() == ["1", "2", "3"]
    assert "embed.batch pass 3" in proc.stderr
