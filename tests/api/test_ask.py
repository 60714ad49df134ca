"""Questions through HTTP: JSON answers, server-sent events, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.api.conftest import LOREM, MULTILANG, assert_error, ingest, parse_sse

pytestmark = [pytest.mark.integration, pytest.mark.both_backends]

QUESTION = "What is the two-column document with Lorem Ipsum about?"


@pytest.fixture
def loaded(client, pdfs_dir: Path):
    """A client whose app holds the lorem PDF in 'papers' and another PDF in 'other'."""
    job = ingest(client, pdfs_dir / LOREM, collection="papers")
    ingest(client, pdfs_dir / MULTILANG, collection="other")
    client.doc_id = job["document_id"]
    return client


def assert_answer_shape(body: dict) -> None:
    assert isinstance(body["answer"], str) and body["answer"]
    assert set(body["flags"]) == {
        "refused",
        "injection_detected",
        "fallback_used",
        "redacted",
        "not_found",
        "truncated",
    }
    for citation in body["citations"]:
        assert set(citation) >= {
            "number",
            "document_id",
            "filename",
            "page",
            "chunk_id",
            "snippet",
            "score",
            "dense_rank",
            "sparse_rank",
        }
    assert "total" in body["timings"]


def test_ask_returns_a_cited_answer(loaded):
    response = loaded.post("/ask", json={"question": QUESTION, "collections": ["papers"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert_answer_shape(body)
    assert body["citations"] and not body["flags"]["not_found"]
    assert {c["filename"] for c in body["citations"]} == {LOREM}
    assert all(c["document_id"] == loaded.doc_id and c["page"] >= 1 for c in body["citations"])
    assert body["generator"] == "extractive"


def test_ask_filters_by_document_and_pages(loaded):
    body = loaded.post(
        "/ask",
        json={"question": QUESTION, "document_ids": [loaded.doc_id], "pages": [2, 3], "top_k": 2},
    ).json()
    assert_answer_shape(body)
    assert all(2 <= c["page"] <= 3 for c in body["citations"])
    assert len(body["citations"]) <= 2


def test_unrelated_question_is_not_found(loaded):
    body = loaded.post("/ask", json={"question": "zebra quantum tariff schedule"}).json()
    assert_answer_shape(body)
    assert body["flags"]["not_found"] and body["citations"] == []


@pytest.mark.parametrize("how", ["body", "accept"])
def test_ask_streams_server_sent_events(loaded, how):
    payload = {"question": QUESTION, "collections": ["papers"]}
    headers = {}
    if how == "body":
        payload["stream"] = True
    else:
        headers["accept"] = "text/event-stream"
    response = loaded.post("/ask", json=payload, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    names = [name for name, _ in events]
    assert names[-1] == "answer" and set(names[:-1]) == {"token"} and len(names) >= 2
    streamed = "".join(json.loads(data)["text"] for name, data in events if name == "token")
    final = json.loads(events[-1][1])
    assert_answer_shape(final)
    assert final["citations"]
    assert streamed.strip() and streamed == final["answer"]


def test_stream_errors_before_the_first_token_keep_their_status(loaded):
    response = loaded.post("/ask", json={"question": "x", "collections": ["nope"], "stream": True})
    assert_error(response, 404, "collection_not_found")


def test_ask_bad_inputs(loaded):
    assert_error(loaded.post("/ask", json={}), 422, "validation_error")
    assert_error(
        loaded.post("/ask", content=b'{"question": ', headers={"content-type": "application/json"}),
        400,
        "malformed_json",
    )
    # The schema requires a non-blank question (minLength, pattern): a validation error.
    assert_error(loaded.post("/ask", json={"question": ""}), 422, "validation_error")
    assert_error(loaded.post("/ask", json={"question": "why " * 1000}), 422, "query_rejected")
    assert_error(loaded.post("/ask", json={"question": "q", "top_k": 0}), 422, "validation_error")
    assert_error(
        loaded.post("/ask", json={"question": "q", "pages": [0, 1]}), 422, "validation_error"
    )
    assert_error(
        loaded.post("/ask", json={"question": "q", "generator": "gpt"}), 422, "validation_error"
    )
    assert_error(
        loaded.post("/ask", json={"question": "q", "collections": ["nope"]}),
        404,
        "collection_not_found",
    )
    assert_error(
        loaded.post("/ask", json={"question": "q", "colections": []}), 422, "validation_error"
    )
