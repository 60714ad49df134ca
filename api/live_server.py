"""Serve an app with uvicorn in a background thread on a free loopback port.

Used by the live-server tests and the API benchmark, which need real HTTP
(the official OpenAI client, concurrent clients) rather than a TestClient.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """Context manager: uvicorn serving ``app`` on ``self.url`` until exit."""

    def __init__(self, app: Any, start_timeout_s: float = 60.0) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.start_timeout_s = start_timeout_s
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(60)


class ServerProcess:
    """`rag serve` in a child process on a free loopback port (crash tests, load runs).

    Args:
        env: The child's environment (``RAG_DATA_DIR`` and other settings).
        start_timeout_s: How long to wait for ``/healthz`` to answer.
    """

    def __init__(self, env: dict[str, str], start_timeout_s: float = 120.0) -> None:
        import subprocess
        import sys
        import tempfile

        import httpx

        self.port = free_port()
        # A file, not a pipe: a chatty server must never block on a full pipe.
        self.log = tempfile.TemporaryFile()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--host", "127.0.0.1"]
            + ["--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        deadline = time.monotonic() + start_timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rag serve exited {self.proc.returncode}: {self.stderr()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("rag serve did not start")
            time.sleep(0.1)

    def stderr(self, tail: int = 2000) -> str:
        """The last characters the server wrote to stderr."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-tail:]

    def wait(self, timeout: float = 120.0) -> int:
        """Wait for the process to end; returns its exit status (negative: a signal)."""
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the process if it still runs."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        """A clean shutdown (SIGINT, as Ctrl-C), killed if it hangs."""
        import signal
        import subprocess

        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.kill()
