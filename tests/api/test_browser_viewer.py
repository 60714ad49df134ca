"""Browser test of the citation viewer: click [1], the cited PDF page and its highlight show.

Same setup as ``test_browser.py`` (a live server with the real app, Debian
Chromium through Playwright). The PDF is uploaded over HTTP; the page asks a
question whose answer is on page 3, the test clicks the first citation chip
and checks the panel: the rendered page is the cited one (the PNG requested
and shown is that page's), and at least one highlight box lies inside the
viewport, over the page image, with a visible size. A screenshot goes to
``artifacts/browser/``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from tests.api.test_browser import SCREENSHOT_DIR, TIMEOUT_MS, browser_page, live_server

pytestmark = [pytest.mark.slow, pytest.mark.integration]

__all__ = ["browser_page", "live_server"]  # fixtures used by name below

PDF_NAME = "en_multicolumn_latex-lorem.pdf"
QUESTION = "What is the capital of Denmark and its area?"


def _upload(base_url: str, pdf: Path) -> str:
    """Upload over HTTP and wait until the document is ready; returns its id."""
    with httpx.Client(base_url=base_url, timeout=60) as client:
        res = client.post("/documents", files={"files": (pdf.name, pdf.read_bytes())})
        assert res.status_code == 202, res.text
        job_id = res.json()["jobs"][0]["job_id"]
        deadline = time.monotonic() + 120
        while True:
            job = client.get(f"/jobs/{job_id}").json()
            if job["status"] in ("succeeded", "failed"):
                break
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        assert job["status"] == "succeeded", job
        return str(job["document_id"])


def test_clicking_a_citation_shows_the_cited_page_with_the_highlight(
    live_server: str, browser_page: object, pdfs_dir: Path
) -> None:
    from playwright.sync_api import Page, expect

    page: Page = browser_page  # type: ignore[assignment]
    pdf = pdfs_dir / PDF_NAME
    document_id = _upload(live_server, pdf)
    images: list[tuple[str, int]] = []
    page.on(
        "response",
        lambda res: images.append((res.url, res.status)) if ".png" in res.url else None,
    )
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(live_server + "/")
    expect(page.locator(".doc-item", has_text=PDF_NAME)).to_have_attribute("data-status", "ready")
    page.fill("#chat-input", QUESTION)
    page.press("#chat-input", "Enter")
    answer = page.locator(".msg.assistant").last
    expect(answer).to_have_class(re.compile(r"\bdone\b"), timeout=TIMEOUT_MS)
    chip = answer.locator("button.cite-chip").first
    expect(chip).to_be_visible()
    expect(chip).to_have_text("1")
    cited_page = int(chip.get_attribute("data-page") or 0)
    assert chip.get_attribute("data-doc-id") == document_id
    assert cited_page == 3, "the capitals table is on page 3"

    chip.click()
    viewer = page.locator("#page-viewer")
    expect(viewer).to_be_visible()
    expect(viewer).to_have_attribute("data-page", str(cited_page))
    expect(page.locator("#page-viewer-status")).to_have_text(f"Page {cited_page} of 3")
    image = page.locator("#page-image")
    expect(page.locator("#page-image-wrap")).to_be_visible()
    page.wait_for_function(
        "() => { const i = document.getElementById('page-image');"
        " return i && i.complete && i.naturalWidth > 0; }"
    )
    expected = f"/documents/{document_id}/pages/{cited_page}.png"
    assert [status for url, status in images if url.endswith(expected)] == [200], images
    natural = image.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    with httpx.Client(base_url=live_server, timeout=30) as client:
        served = client.get(expected)
    from io import BytesIO

    from PIL import Image

    assert list(Image.open(BytesIO(served.content)).size) == natural  # that page's render

    highlights = page.locator("#page-image-wrap .page-highlight")
    expect(highlights.first).to_be_visible()
    image_box = image.bounding_box()
    viewport = page.viewport_size
    assert image_box and viewport
    visible = 0
    for index in range(highlights.count()):
        box = highlights.nth(index).bounding_box()
        assert box is not None and box["width"] > 0 and box["height"] > 0, box
        assert image_box["x"] - 1 <= box["x"] <= image_box["x"] + image_box["width"]
        assert image_box["y"] - 1 <= box["y"] <= image_box["y"] + image_box["height"]
        centre_x, centre_y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        if 0 <= centre_x <= viewport["width"] and 0 <= centre_y <= viewport["height"]:
            # The boxes let clicks through (pointer-events: none), so the topmost
            # element under one is the page image itself when nothing covers it.
            on_top = page.evaluate(
                "([x, y]) => Boolean(document.elementFromPoint(x, y)?.closest('#page-image-wrap'))",
                [centre_x, centre_y],
            )
            visible += bool(on_top) and box["width"] > 4 and box["height"] > 4
    assert visible >= 1, "no highlight box is on screen and on top"
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT_DIR / "citation_viewer.png"))
    assert not errors, errors
