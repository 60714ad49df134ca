"""Parallel uploads and questions against a live server keep the stores consistent."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import ENCRYPTED, LOREM, MULTILANG, NICS, wait_job

pytestmark = pytest.mark.integration

QUESTIONS = [
    "What is Lorem Ipsum?",
    "How many handgun background checks were there?",
    "Which languages appear in the multilingual page?",
    "What does the two-column document contain?",
]


def test_parallel_uploads_and_questions(live_server, pdfs_dir: Path):
    url = live_server.url

    def upload(name: str) -> list[str]:
        form = {"collection": "papers" if name != NICS else "tables"}
        if name == ENCRYPTED:
            form["password"] = "openpassword"
        with httpx.Client(base_url=url, timeout=60) as http:
            data = (pdfs_dir / name).read_bytes()
            response = http.post("/documents", files=[("files", (name, data))], data=form)
            assert response.status_code == 202, response.text
            return [ref["job_id"] for ref in response.json()["jobs"]]

    def ask(i: int) -> httpx.Response:
        time.sleep(0.01 * i)  # spread the questions over the ingestion
        with httpx.Client(base_url=url, timeout=120) as http:
            payload = {"question": QUESTIONS[i % len(QUESTIONS)], "stream": i % 5 == 0}
            return http.post("/ask", json=payload)

    with ThreadPoolExecutor(max_workers=8) as pool:
        uploads = [pool.submit(upload, name) for name in (LOREM, MULTILANG, NICS, ENCRYPTED)]
        asks = [pool.submit(ask, i) for i in range(24)]
        job_ids = [job for future in uploads for job in future.result()]
        answers = [future.result() for future in asks]

    for response in answers:
        assert response.status_code == 200, response.text
        if response.headers["content-type"].startswith("text/event-stream"):
            assert "event: answer" in response.text and "event: error" not in response.text
        else:
            body = response.json()
            assert isinstance(body["answer"], str) and body["answer"]
            assert isinstance(body["citations"], list) and "not_found" in body["flags"]

    with httpx.Client(base_url=url, timeout=60) as http:
        jobs = [wait_job(http, job_id) for job_id in job_ids]
        assert [j["status"] for j in jobs] == ["succeeded"] * 4, jobs
        late = http.post("/ask", json={"question": "What is Lorem Ipsum?"}).json()
        assert late["citations"] and not late["flags"]["not_found"]

    checks = live_server.app.state.rag.services.kb.check()
    assert {c.collection for c in checks} == {"papers", "tables"}
    assert all(c.consistent for c in checks), [c.to_dict() for c in checks]
    assert sum(c.sql_chunks for c in checks) == sum(j["chunks_total"] for j in jobs)
