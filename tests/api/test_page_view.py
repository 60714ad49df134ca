"""The viewer's routes: a cited page as PNG, its text with the cited chunk marked, its boxes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ingest.page_view import locate, page_text
from rag.records import ChunkInfo
from tests.api.conftest import LOREM, assert_error, ingest

pytestmark = pytest.mark.integration


def _ready(client, path: Path, **form: str) -> tuple[str, list[dict]]:
    job = ingest(client, path, **form)
    assert job["status"] == "succeeded", job
    doc_id = job["document_id"]
    chunks = client.get(f"/documents/{doc_id}/chunks").json()["chunks"]
    return doc_id, chunks


def test_pdf_page_renders_as_png_at_the_page_size(client, pdfs_dir: Path) -> None:
    from PIL import Image
    from pypdf import PdfReader

    doc_id, _ = _ready(client, pdfs_dir / LOREM)
    response = client.get(f"/documents/{doc_id}/pages/2.png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    width, height = PdfReader(pdfs_dir / LOREM).pages[1].mediabox.upper_right
    assert image.size == (round(float(width) * 1.5), round(float(height) * 1.5))  # 1.5 px/pt
    small = Image.open(io.BytesIO(client.get(f"/documents/{doc_id}/pages/2.png?scale=0.5").content))
    assert small.size == (round(float(width) * 0.5), round(float(height) * 0.5))
    assert_error(client.get(f"/documents/{doc_id}/pages/9.png"), 404, "page_not_found")


def test_cited_chunk_is_marked_in_the_page_text_and_boxed_on_the_image(
    client, pdfs_dir: Path
) -> None:
    doc_id, chunks = _ready(client, pdfs_dir / LOREM)
    cited = next(c for c in chunks if c["page_start"] == c["page_end"] == 2)
    view = client.get(f"/documents/{doc_id}/pages/2?chunk_id={cited['id']}").json()
    assert view["page"] == 2 and view["page_count"] == 3
    assert view["image_url"] == f"/documents/{doc_id}/pages/2.png"
    marked = view["text"][view["highlight_start"] : view["highlight_end"]]
    assert cited["text"].endswith(marked) and len(marked) > 100
    assert view["boxes"], "the cited lines are located on the page image"
    for left, top, right, bottom in view["boxes"]:
        assert 0 <= left < right <= 1 and 0 <= top < bottom <= 1
    # Without a chunk there is nothing to mark, but the page is still shown.
    plain = client.get(f"/documents/{doc_id}/pages/2").json()
    assert plain["highlight_start"] is None and plain["boxes"] == []
    assert_error(client.get(f"/documents/{doc_id}/pages/4"), 404, "page_not_found")


def test_text_documents_get_the_text_view_and_no_image(client, tmp_path: Path) -> None:
    note = tmp_path / "note.md"
    note.write_text("# Notes\n\nThe reactor coolant pump runs at 1,480 rpm.\n", encoding="utf-8")
    doc_id, chunks = _ready(client, note)
    view = client.get(f"/documents/{doc_id}/pages/1?chunk_id={chunks[0]['id']}").json()
    assert view["image_url"] is None and view["boxes"] == []
    assert "1,480 rpm" in view["text"][view["highlight_start"] : view["highlight_end"]]
    assert_error(client.get(f"/documents/{doc_id}/pages/1.png"), 404, "page_not_found")


def test_page_routes_need_the_api_key(make_client, pdfs_dir: Path) -> None:
    client = make_client(api={"api_keys": ["secret-key"]})
    client.headers["Authorization"] = "Bearer secret-key"
    doc_id, _ = _ready(client, pdfs_dir / LOREM)
    del client.headers["Authorization"]
    for path in (f"/documents/{doc_id}/pages/1.png", f"/documents/{doc_id}/pages/1"):
        assert client.get(path).status_code == 401


@pytest.mark.unit
def test_locate_ignores_case_spacing_hyphenation_and_finds_both_ends() -> None:
    page = "Intro.\nThe Trace-based compi-\nlation of dynamic lan-\nguages is fast. After."
    start, end = locate(page, "the trace based compilation of dynamic languages is fast")
    assert page[start:end] == "The Trace-based compi-\nlation of dynamic lan-\nguages is fast"
    assert locate(page, "nothing like this here") is None


@pytest.mark.unit
def test_page_text_stitches_chunks_without_their_overlaps_or_repeated_headers() -> None:
    clean = "Alpha one. Beta two. Gamma three."

    def chunk(chunk_id: int, start: int, end: int, prefix: str = "") -> ChunkInfo:
        return ChunkInfo(chunk_id, "d", 1, chunk_id, prefix + clean[start:end], 1, 1, start, end, 3)

    chunks = [chunk(1, 0, 21), chunk(2, 11, 33, prefix="HEADER\n")]  # 2 overlaps 1 by 10 chars
    shown = page_text(chunks, 1, cited_chunk_id=2)
    assert shown.text == clean
    assert shown.text[shown.highlight_start : shown.highlight_end] == clean[11:33]
