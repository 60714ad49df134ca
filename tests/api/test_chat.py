"""Chat sessions through HTTP: new session, follow-up with history, streaming, deletion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.api.conftest import LOREM, assert_error, ingest, parse_sse

pytestmark = [pytest.mark.integration, pytest.mark.both_backends]


def test_chat_session_with_follow_up(client, pdfs_dir: Path):
    ingest(client, pdfs_dir / LOREM, collection="papers")
    question = "What is the Lorem Ipsum document about?"
    first = client.post("/chat", json={"message": question, "collections": ["papers"]})
    assert first.status_code == 200, first.text
    body = first.json()
    session_id = body["session_id"]
    assert (
        body["answer"]
        and body["citations"]
        and set(body) == {"session_id", "answer", "citations", "flags", "timings"}
    )

    follow = client.post(
        "/chat", json={"message": "And what about its columns?", "session_id": session_id}
    )
    assert follow.status_code == 200, follow.text
    assert follow.json()["session_id"] == session_id

    history = client.get(f"/chat/{session_id}").json()
    assert history["session_id"] == session_id
    messages = history["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[0]["content"] == question
    assert messages[1]["content"] == body["answer"]
    assert messages[1]["citations"] == body["citations"] and messages[1]["flags"] == body["flags"]
    assert messages[0]["citations"] == [] and all(m["created_at"] for m in messages)

    assert client.delete(f"/chat/{session_id}").json() == {"deleted": session_id}
    assert_error(client.get(f"/chat/{session_id}"), 404, "chat_not_found")


def test_chat_streams_and_stores_the_answer(client, pdfs_dir: Path):
    ingest(client, pdfs_dir / LOREM)
    response = client.post("/chat", json={"message": "What is Lorem Ipsum?", "stream": True})
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    assert events[0][0] == "token" and events[-1][0] == "answer"
    final = json.loads(events[-1][1])
    stored = client.get(f"/chat/{final['session_id']}").json()["messages"]
    assert stored[-1]["content"] == final["answer"]


def test_chat_errors(client):
    assert_error(
        client.post("/chat", json={"message": "hi", "session_id": "nope"}), 404, "chat_not_found"
    )
    assert_error(client.get("/chat/nope"), 404, "chat_not_found")
    assert_error(client.delete("/chat/nope"), 404, "chat_not_found")
    assert_error(client.post("/chat", json={}), 422, "validation_error")
    assert_error(client.post("/chat", json={"message": ""}), 422, "validation_error")
