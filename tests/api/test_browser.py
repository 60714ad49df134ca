"""End-to-end browser test of the web page, driving Debian's Chromium with Playwright.

A live uvicorn server (real ``api.app.create_app``, hashing embedder, extractive
generator) runs in a thread on 127.0.0.1. The test uploads a real PDF through the
page, waits for it to be ready, asks a question, checks the streamed answer's
citation against the stored chunk and the PDF's own text, opens the citation,
then deletes the document. A screenshot goes to ``artifacts/browser/``.

Needs ``/usr/bin/chromium`` (``apt-get install chromium``); never downloads a browser.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PDF_NAME = "en_academic_tables_tableformer-arxiv2203.00274.pdf"
QUESTION = "What does TableFormer use to encode the table structure?"
SCREENSHOT_DIR = PROJECT_ROOT / "artifacts" / "browser"
TIMEOUT_MS = 120_000


def _squash(text: str) -> str:
    """Lowercase letters and digits only, so PDF line breaks and hyphenation don't matter."""
    text = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"[^0-9a-z]+", "", text)


def _pdf_page_text(pdf: Path, page: int) -> str:
    from pypdf import PdfReader

    return PdfReader(str(pdf)).pages[page - 1].extract_text() or ""


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[str]:
    """Base URL of a uvicorn server running the real app in a background thread."""
    from api.app import create_app
    from api.live_server import LiveServer
    from tests.conftest import fast_settings

    with LiveServer(create_app(fast_settings(tmp_path))) as server:
        yield server.url


@pytest.fixture
def browser_page() -> Iterator[object]:
    """A Playwright page in headless Debian Chromium, English UI."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(locale="en-US", viewport={"width": 1360, "height": 900})
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            yield page
            context.close()
        finally:
            browser.close()


def _find_chunk(base_url: str, document_id: str, chunk_id: int) -> dict:
    """The stored chunk with this id, from GET /documents/{id}/chunks (paged if needed)."""
    seen: list[dict] = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        params: dict[str, int] = {}
        while True:
            res = client.get(f"/documents/{document_id}/chunks", params=params)
            assert res.status_code == 200, res.text
            body = res.json()
            rows = body if isinstance(body, list) else body.get("chunks", [])
            for row in rows:
                if int(row["id"]) == chunk_id:
                    return row
            seen.extend(rows)
            total = body.get("total") if isinstance(body, dict) else None
            if not rows or total is None or len(seen) >= int(total):
                break
            params = {"offset": len(seen)}
    raise AssertionError(f"chunk {chunk_id} not in GET /documents/{document_id}/chunks")


def test_upload_ask_cite_delete(live_server: str, browser_page: object, pdfs_dir: Path) -> None:
    from playwright.sync_api import Page, expect

    page: Page = browser_page  # type: ignore[assignment]
    pdf = pdfs_dir / PDF_NAME
    if not pdf.exists():
        pytest.skip(f"shared PDF {pdf} is absent")
    console_errors: list[str] = []
    page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: console_errors.append(str(exc)))
    page.on(
        "response",
        lambda res: (
            console_errors.append(f"HTTP {res.status} {res.request.method} {res.url}")
            if res.status >= 400
            else None
        ),
    )
    page.on("dialog", lambda dialog: dialog.accept())

    page.goto(live_server + "/")
    expect(page.locator("#sidebar-title")).to_contain_text("Knowledge Base")
    expect(page.locator("#collection-select option")).not_to_have_count(0)

    # Upload through the (visually hidden) file input; progress then the ready document.
    page.set_input_files("#file-input", str(pdf))
    expect(page.locator(".upload-item").first).to_contain_text(PDF_NAME)
    doc = page.locator(".doc-item", has_text=PDF_NAME)
    expect(doc).to_have_attribute("data-status", "ready", timeout=TIMEOUT_MS)
    document_id = doc.get_attribute("data-doc-id")
    assert document_id
    expect(doc).to_contain_text("ready")

    # Restrict questions to this document, then ask (Enter sends).
    doc.locator(".doc-main").click()
    expect(page.locator("#scope-bar")).to_be_visible()
    expect(page.locator("#chat-scope")).to_contain_text(PDF_NAME)
    page.fill("#chat-input", QUESTION)
    page.press("#chat-input", "Enter")
    expect(page.locator(".msg.user .msg-body")).to_have_text(QUESTION)

    answer = page.locator(".msg.assistant").last
    expect(answer).to_have_class(re.compile(r"\bdone\b"), timeout=TIMEOUT_MS)
    assert "error" not in (answer.get_attribute("class") or ""), answer.inner_text()
    # The answer arrived as streamed token events before the final answer event.
    assert int(answer.get_attribute("data-tokens") or 0) > 0, "no token events were rendered"
    body_text = answer.locator(".msg-body").inner_text()
    assert len(body_text.strip()) > 20, body_text

    chips = answer.locator("button.cite-chip")
    expect(chips.first).to_be_visible()
    chip = chips.first
    cited_doc = chip.get_attribute("data-doc-id")
    cited_page = int(chip.get_attribute("data-page") or 0)
    chunk_id = int(chip.get_attribute("data-chunk-id") or -1)
    assert cited_doc == document_id
    assert cited_page >= 1

    # The source list under the answer names the file and page.
    sources = answer.locator(".source-list li")
    expect(sources.first).to_contain_text(PDF_NAME)
    expect(answer.locator(".sources")).to_contain_text(f"page {cited_page}")

    # The citation's page agrees with the stored chunk and with the PDF's own text.
    chunk = _find_chunk(live_server, document_id, chunk_id)
    assert int(chunk["page_start"]) <= cited_page <= int(chunk["page_end"]), chunk

    # Open the citation: filename, page, snippet and a link to the page of the file.
    chip.click()
    box = page.locator("#citation-box")
    expect(box).to_be_visible()
    expect(box.locator("#citation-title")).to_contain_text(PDF_NAME)
    expect(box.locator("#citation-meta")).to_contain_text(f"page {cited_page}")
    snippet = box.locator("#citation-snippet").inner_text()
    assert snippet.strip(), "citation snippet is empty"
    href = box.locator("#citation-link").get_attribute("href") or ""
    assert href.endswith(f"/documents/{document_id}/file#page={cited_page}"), href

    # The snippet's words are on the cited page of the PDF (the longest piece of it,
    # since snippets may be shortened with an ellipsis).
    pieces = [p for p in re.split(r"\.\.\.|…", snippet) if _squash(p)]
    probe = _squash(max(pieces, key=lambda p: len(_squash(p))))[:60]
    assert len(probe) >= 15, snippet
    page_text = _squash(_pdf_page_text(pdf, cited_page))
    assert probe in page_text, f"snippet {snippet!r} not found on page {cited_page} of {pdf.name}"

    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT_DIR / "upload_ask_cite.png"), full_page=True)

    # The panel widens when the cited page's image arrives; wait for it, so the close
    # click cannot land while the layout moves (it did on a busy host).
    expect(box.locator("#page-image-wrap")).to_be_visible(timeout=TIMEOUT_MS)
    page.click("#citation-close")
    expect(box).to_be_hidden()

    # Delete the document; it disappears from the list and from the API.
    doc.locator(".doc-delete").click()
    expect(page.locator(".doc-item", has_text=PDF_NAME)).to_have_count(0)
    expect(page.locator("#scope-bar")).to_be_hidden()
    with httpx.Client(base_url=live_server, timeout=30) as client:
        listed = client.get("/documents").json()["documents"]
    assert all(d["id"] != document_id for d in listed)

    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT_DIR / "after_delete.png"), full_page=True)
    assert not console_errors, console_errors
