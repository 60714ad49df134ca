from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rag.errors import GeneratorUnavailable, InvalidInput
from rag.generation.openai_generator import OpenAIGenerator
from rag.protocols import Generator
from rag.settings import GeneratorSettings

pytestmark = pytest.mark.unit

PIECES = ["Paris", " is", " the", " capital", "."]
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


class FakeOpenAI(BaseHTTPRequestHandler):
    """Answers /v1/chat/completions like an OpenAI-compatible server; /broken/v1/... fails."""

    requests: list[dict] = []

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body["_path"] = self.path
        body["_auth"] = self.headers.get("Authorization")
        self.requests.append(body)
        if self.path.startswith("/broken/"):
            self._send(500, "application/json", b'{"error": "model crashed"}')
            return
        if self.path != "/v1/chat/completions":
            self._send(404, "text/plain", b"not found")
            return
        if not body.get("stream"):
            answer = {"choices": [{"message": {"role": "assistant", "content": "".join(PIECES)}}]}
            self._send(200, "application/json", json.dumps(answer).encode())
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.write(b": keep-alive\n\n")
        first = {"choices": [{"delta": {"role": "assistant"}}]}
        self.wfile.write(f"data: {json.dumps(first)}\n\n".encode())
        for piece in PIECES:
            event = {"choices": [{"delta": {"content": piece}, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b'data: {"choices": [{"delta": {}, "finish_reason": "stop"}]}\n\n')
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.write(b'data: {"choices": [{"delta": {"content": "after done"}}]}\n\n')

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server() -> Iterator[str]:
    """Base URL of a fake OpenAI-compatible server on a free loopback port."""
    FakeOpenAI.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def make(base_url: str, **overrides) -> OpenAIGenerator:
    return OpenAIGenerator(
        GeneratorSettings(
            backend="openai",
            openai_base_url=base_url,
            openai_model="tiny",
            openai_api_key="secret",
            openai_timeout_s=5,
            **overrides,
        )
    )


def test_generate_posts_chat_completion(server: str) -> None:
    gen = make(f"{server}/v1/", temperature=0.2)
    assert isinstance(gen, Generator)
    assert gen.name == "openai:tiny"
    assert gen.generate(MESSAGES, max_new_tokens=16) == "Paris is the capital."
    request = FakeOpenAI.requests[-1]
    assert request["_path"] == "/v1/chat/completions"
    assert request["_auth"] == "Bearer secret"
    assert request["model"] == "tiny"
    assert request["messages"] == MESSAGES
    assert request["max_tokens"] == 16
    assert request["temperature"] == 0.2
    assert request["stream"] is False
    gen.close()


def test_stream_yields_delta_pieces_until_done(server: str) -> None:
    gen = make(f"{server}/v1")
    assert list(gen.stream(MESSAGES, max_new_tokens=8)) == PIECES
    assert FakeOpenAI.requests[-1]["stream"] is True


def test_server_error_is_generator_unavailable_with_url_and_status(server: str) -> None:
    gen = make(f"{server}/broken/v1")
    with pytest.raises(GeneratorUnavailable) as info:
        gen.generate(MESSAGES, max_new_tokens=8)
    message = str(info.value)
    assert f"{server}/broken/v1/chat/completions" in message
    assert "HTTP 500" in message and "model crashed" in message
    assert info.value.details["status"] == 500
    with pytest.raises(GeneratorUnavailable, match="HTTP 500"):
        list(gen.stream(MESSAGES, max_new_tokens=8))


def test_wrong_path_hints_at_the_base_url(server: str) -> None:
    with pytest.raises(GeneratorUnavailable, match="HTTP 404.*OPENAI_BASE_URL"):
        make(server).generate(MESSAGES, max_new_tokens=8)  # missing /v1


def test_unreachable_server_is_generator_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gen = make(f"http://127.0.0.1:{port}/v1")
    with pytest.raises(GeneratorUnavailable, match=f"127.0.0.1:{port}.*server is running"):
        gen.generate(MESSAGES, max_new_tokens=8)
    with pytest.raises(GeneratorUnavailable, match="could not reach"):
        list(gen.stream(MESSAGES, max_new_tokens=8))


def test_error_event_in_stream_is_generator_unavailable() -> None:
    gen = make("http://127.0.0.1:1/v1")
    with pytest.raises(GeneratorUnavailable, match="out of memory"):
        gen._parse_event('data: {"error": {"message": "out of memory"}}')
    assert gen._parse_event("data: [DONE]") is None
    assert gen._parse_event("event: ping") == ""


def test_token_estimate_and_context_length() -> None:
    gen = make("http://127.0.0.1:1/v1")
    assert gen.context_length == 4096
    assert make("http://127.0.0.1:1/v1", context_length=32000).context_length == 32000
    assert gen.count_tokens("abcdefgh") == 2
    assert gen.count_tokens("巴黎是首都") == 5
    assert gen.count_tokens("") == 0
    with pytest.raises(InvalidInput):
        gen.generate([], max_new_tokens=8)
