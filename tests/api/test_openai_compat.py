"""The OpenAI-compatible endpoints, driven by the official ``openai`` client over a live server."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from tests.api.conftest import LOREM, assert_error, ingest

pytestmark = pytest.mark.integration


@pytest.fixture
def oa(live_server, pdfs_dir: Path):
    """An OpenAI client pointed at the live server, with the lorem PDF in 'papers'."""
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        ingest(http, pdfs_dir / LOREM, collection="papers")
    client = openai.OpenAI(base_url=live_server.url + "/v1", api_key="unused", max_retries=0)
    yield client
    client.close()


def test_models_are_the_collections(oa):
    models = oa.models.list()
    assert [m.id for m in models.data] == ["papers"]
    assert models.data[0].owned_by == "rag" and models.data[0].object == "model"


def test_chat_completion(oa):
    completion = oa.chat.completions.create(
        model="papers",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is this document?"},
            {"role": "assistant", "content": "A two-column sample."},
            {"role": "user", "content": "What is the lorem ipsum dolor sit amet text?"},
        ],
    )
    assert completion.id.startswith("chatcmpl-") and completion.object == "chat.completion"
    assert completion.model == "papers"
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert "\n\nSources:\n[1] " + LOREM + ", page " in choice.message.content
    assert completion.usage.total_tokens > 0
    citations = completion.model_extra["citations"]
    assert citations and citations[0]["filename"] == LOREM


def test_chat_completion_stream(oa):
    messages = [{"role": "user", "content": "What is the lorem ipsum dolor sit amet text?"}]
    stream = oa.chat.completions.create(model="papers", messages=messages, stream=True)
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.strip() and "Sources:\n[1] " + LOREM in text
    whole = oa.chat.completions.create(model="papers", messages=messages)
    assert text == whole.choices[0].message.content  # the stream is the answer, once


def test_unknown_model_and_bad_messages(oa, live_server):
    with pytest.raises(openai.NotFoundError):
        oa.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    with httpx.Client(base_url=live_server.url) as http:
        response = http.post(
            "/v1/chat/completions",
            json={"model": "papers", "messages": [{"role": "assistant", "content": "hi"}]},
        )
        assert_error(response, 422, "validation_error")  # no user message: the schema says so
        response = http.post("/v1/chat/completions", json={"model": "papers", "messages": []})
        assert_error(response, 422, "validation_error")
