"""Pictures inside EPUB books read by OCR, in the chapter and at the place that shows them."""

from __future__ import annotations

import io
import zipfile

import pytest

from ingest.ocr import RapidOcrEngine
from ingest.parsers import EpubParser, get_parser
from ingest.parsers.epub import picture_path
from ingest.parsers.html import html_to_text
from ingest.sniff import EPUB
from rag.errors import ConfigError, EmptyDocument
from tests.conftest import shared_path
from tests.ingest.parsers.test_office_pictures import ENGLISH, ImageOcr, icon_png, text_png

_XHTML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops">'
    "<head><title>{title}</title></head><body>{body}</body></html>"
)
_SVG_COVER = (
    '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
    ' viewBox="0 0 600 800"><image width="600" height="800" xlink:href="{href}"/></svg>'
)


def build_epub(
    chapters: list[tuple[str, str]], files: dict[str, bytes], *, title: str | None = None
) -> bytes:
    """An EPUB 3 book: the package in OEBPS/, chapters (path under OEBPS/, body) in spine order.

    Args:
        chapters: Each chapter's path relative to the package and its ``<body>`` markup.
        files: Other members (pictures) by their path relative to the package.
        title: The book's dc:title; None leaves the metadata without text.
    """
    items = [
        f'<item id="c{i}" href="{path}" media-type="application/xhtml+xml"/>'
        for i, (path, _) in enumerate(chapters)
    ]
    items += [
        f'<item id="f{i}" href="{path}" media-type="image/png"/>' for i, path in enumerate(files)
    ]
    spine = "".join(f'<itemref idref="c{i}"/>' for i in range(len(chapters)))
    metadata = f"<dc:title>{title}</dc:title>" if title else ""
    opf = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
        f'<metadata xmlns:dc="http://purl.org/dc/elements/1.1/">{metadata}</metadata>'
        f"<manifest>{''.join(items)}</manifest><spine>{spine}</spine></package>"
    )
    container = (
        '<?xml version="1.0"?>'
        '<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
        '<rootfiles><rootfile full-path="OEBPS/content.opf"'
        ' media-type="application/oebps-package+xml"/></rootfiles></container>'
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        archive.writestr("META-INF/container.xml", container)
        archive.writestr("OEBPS/content.opf", opf)
        for number, (path, body) in enumerate(chapters, start=1):
            markup = _XHTML.format(title=f"Chapter {number}", body=body)
            archive.writestr(f"OEBPS/{path}", markup)
        for path, data in files.items():
            archive.writestr(f"OEBPS/{path}", data)
    return out.getvalue()


# Pictures told apart by width: the fake engine reads a fixed text per width.
COVER, FIRST, SECOND = text_png("cover", (600, 200)), text_png("one"), text_png("two", (700, 160))
READS = {600: "COVER TEXT", 900: "FIRST PICTURE", 700: "SECOND PICTURE"}


def picture_book() -> bytes:
    """A cover drawn with SVG, a chapter with a picture inside a paragraph, one without."""
    return build_epub(
        [
            ("text/cover.xhtml", _SVG_COVER.format(href="../images/cover.png")),
            (
                "text/ch1.xhtml",
                "<h1>One</h1><p>Opening paragraph.</p>"
                '<p>Before the figure <img src="../images/../images/p1.png" alt="figure one"/>'
                " after the figure.</p>"
                '<div><img src="../images/p%202.png#view" alt=""/></div>'
                "<p>Closing paragraph.</p>",
            ),
            ("text/ch2.xhtml", "<h1>Two</h1><p>No pictures here.</p>"),
        ],
        {"images/cover.png": COVER, "images/p1.png": FIRST, "images/p 2.png": SECOND},
        title="Picture Book",
    )


# --- wiring, with an engine that reads by image width (fast) ---------------------


@pytest.mark.unit
def test_picture_text_lands_in_its_chapter_in_reading_order() -> None:
    engine = ImageOcr(READS, confidence=0.75)
    parsed = EpubParser(ocr=engine).parse(picture_book())
    cover, chapter, plain = parsed.pages
    assert cover.text == "Picture Book\n\nCOVER TEXT"
    assert cover.ocr_confidence == pytest.approx(0.75)
    assert chapter.text == (
        "One\n\nOpening paragraph.\n\nBefore the figure\n\nFIRST PICTURE\n\nafter the figure."
        "\n\nSECOND PICTURE\n\nClosing paragraph."
    )
    assert chapter.ocr_confidence == pytest.approx(0.75)
    assert plain.text == "Two\n\nNo pictures here." and plain.ocr_confidence is None
    assert [shape[1] for shape in engine.shapes] == [600, 900, 700]  # in reading order
    assert parsed.warnings == ()


@pytest.mark.unit
def test_page_confidence_is_its_least_sure_picture() -> None:
    class TwoConfidences(ImageOcr):
        def read(self, image):  # type: ignore[no-untyped-def]
            self.confidence = 0.9 if image.shape[1] == 900 else 0.6
            return super().read(image)

    book = build_epub(
        [("ch.xhtml", '<p>Text.</p><img src="a.png"/><img src="b.png"/>')],
        {"a.png": FIRST, "b.png": SECOND},
    )
    page = EpubParser(ocr=TwoConfidences(READS)).parse(book).pages[0]
    assert "FIRST PICTURE" in page.text and "SECOND PICTURE" in page.text
    assert page.ocr_confidence == pytest.approx(0.6)


@pytest.mark.unit
def test_svg_2_href_and_ocr_lines_are_kept() -> None:
    svg = '<svg xmlns="http://www.w3.org/2000/svg"><image href="scan.png"/></svg>'
    book = build_epub([("scan.xhtml", f"<p>Above.</p>{svg}<p>Below.</p>")], {"scan.png": FIRST})
    page = EpubParser(ocr=ImageOcr({900: "line one\nline two"})).parse(book).pages[0]
    assert page.text == "Above.\n\nline one\nline two\n\nBelow."


@pytest.mark.unit
def test_icons_are_skipped_and_a_picture_shown_twice_is_read_once() -> None:
    book = build_epub(
        [
            ("a.xhtml", '<p>First.</p><img src="img/icon.png"/><img src="img/p1.png"/>'),
            ("b.xhtml", '<p>Second.</p><img src="img/p1.png"/><img src="./img/../img/p1.png"/>'),
        ],
        {"img/icon.png": icon_png(), "img/p1.png": FIRST},
    )
    engine = ImageOcr(READS)
    first, second = EpubParser(ocr=engine).parse(book).pages
    assert first.text == "First.\n\nFIRST PICTURE"
    assert second.text == "Second." and second.ocr_confidence is None
    assert [shape[1] for shape in engine.shapes] == [900]  # the icon never reached OCR


@pytest.mark.unit
def test_at_most_max_pictures_are_read_and_the_rest_is_a_warning() -> None:
    widths = (610, 620, 630)
    pictures = {f"p{w}.png": text_png(f"picture {w}", (w, 120)) for w in widths}
    body = "".join(f'<p>Para {w}.</p><img src="p{w}.png"/>' for w in widths)
    engine = ImageOcr({w: f"text {w}" for w in widths})
    parsed = EpubParser(ocr=engine, max_pictures=1).parse(build_epub([("c.xhtml", body)], pictures))
    text = parsed.pages[0].text
    assert "text 610" in text and "text 620" not in text and "text 630" not in text
    assert len(engine.shapes) == 1
    assert any("2 picture(s) not read" in warning for warning in parsed.warnings)
    with pytest.raises(ConfigError, match="max_pictures must be >= 0, got -1"):
        EpubParser(ocr=engine, max_pictures=-1)


@pytest.mark.unit
def test_missing_external_and_oversized_pictures_are_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    links = [
        "http://example.com/p1.png",
        "https://example.com/p1.png",
        "data:image/png;base64,iVBORw0KGgo=",
        "/OEBPS/images/p1.png",
        "../../../images/p1.png",
        "images/missing.png",
        "",
        "#only-a-fragment",
    ]
    body = "<p>Kept text.</p>" + "".join(f'<img src="{link}"/>' for link in links) + "<img/>"
    engine = ImageOcr(READS)
    book = build_epub([("c.xhtml", body)], {"images/p1.png": FIRST})
    parsed = EpubParser(ocr=engine).parse(book)
    assert parsed.pages[0].text == "Kept text." and parsed.warnings == ()
    assert engine.shapes == []
    # A member over the size bound is not inflated.
    monkeypatch.setattr("ingest.parsers.epub._PICTURE_LIMIT", 1024)
    big = build_epub(
        [("c.xhtml", '<p>Kept text.</p><img src="images/p1.png"/>')], {"images/p1.png": FIRST}
    )
    assert EpubParser(ocr=engine).parse(big).pages[0].text == "Kept text."
    assert engine.shapes == []


@pytest.mark.unit
@pytest.mark.parametrize(
    ("document", "link", "expected"),
    [
        ("OEBPS/text/ch1.xhtml", "../images/../images/p1.png", "OEBPS/images/p1.png"),
        ("OEBPS/text/ch1.xhtml", "p%201.png#frag", "OEBPS/text/p 1.png"),
        ("ch1.xhtml", "./img/a.png", "img/a.png"),
        ("OEBPS/ch1.xhtml", "../../a.png", None),
        ("OEBPS/ch1.xhtml", "/a.png", None),
        ("OEBPS/ch1.xhtml", "HTTPS://host/a.png", None),
        ("OEBPS/ch1.xhtml", "data:image/png;base64,AAAA", None),
        ("OEBPS/ch1.xhtml", "#top", None),
    ],
)
def test_picture_path_resolves_links_in_the_archive(
    document: str, link: str, expected: str | None
) -> None:
    assert picture_path(document, link) == expected


# What the parser returned for picture_book() before it read pictures (pinned).
BEFORE_PICTURES = (
    "Picture Book\n\n",  # the metadata, then the cover chapter's empty text
    "One\n\nOpening paragraph.\n\nBefore the figure  after the figure.\n\nClosing paragraph.",
    "Two\n\nNo pictures here.",
)


@pytest.mark.unit
def test_without_an_engine_the_output_is_unchanged() -> None:
    parsed = EpubParser().parse(picture_book())
    assert tuple(page.text for page in parsed.pages) == BEFORE_PICTURES
    assert all(page.ocr_confidence is None for page in parsed.pages) and parsed.warnings == ()
    blind = EpubParser(ocr=ImageOcr({})).parse(picture_book())  # reads pictures, finds no text
    assert blind.pages == parsed.pages


@pytest.mark.unit
@pytest.mark.parametrize(
    "name", ["en_epub3_markitdown-test.epub", "en_epub_book_winter-sports.epub"]
)
def test_shared_books_are_unchanged_when_pictures_hold_no_text(name: str) -> None:
    data = shared_path("office", name).read_bytes()
    assert EpubParser(ocr=ImageOcr({})).parse(data).pages == EpubParser().parse(data).pages


@pytest.mark.unit
def test_html_to_text_without_a_picture_callback_is_unchanged() -> None:
    markup = (
        '<p>A <img src="a.png"/> b</p><svg><image href="c.png"/><text>drawn</text></svg>'
        '<noscript><img src="d.png"/></noscript><p>End</p>'
    )
    offered: list[str] = []

    def pictures(tag):  # type: ignore[no-untyped-def]
        offered.append(str(tag.get("src") or tag.get("href")))
        return None

    assert html_to_text(markup, pictures=pictures) == html_to_text(markup) == "A  b\n\nEnd"
    assert offered == ["a.png", "c.png"]  # the <noscript> fallback is not shown


@pytest.mark.unit
def test_an_image_only_book_parses_with_an_engine_only() -> None:
    book = build_epub(
        [("p1.xhtml", '<img src="s/1.png"/>'), ("p2.xhtml", '<div><img src="s/2.png"/></div>')],
        {"s/1.png": FIRST, "s/2.png": SECOND},
    )
    with pytest.raises(EmptyDocument):
        EpubParser().parse(book)
    with pytest.raises(EmptyDocument):
        EpubParser(ocr=ImageOcr({})).parse(book)  # OCR finds no text either
    parsed = EpubParser(ocr=ImageOcr(READS, confidence=0.9)).parse(book)
    assert [page.text for page in parsed.pages] == ["FIRST PICTURE", "SECOND PICTURE"]
    assert [page.ocr_confidence for page in parsed.pages] == pytest.approx([0.9, 0.9])


@pytest.mark.unit
def test_get_parser_hands_the_engine_and_the_limit_to_the_epub_parser() -> None:
    engine = ImageOcr(READS)
    parser = get_parser(EPUB, ocr=engine, max_pictures=0)
    assert parser.ocr is engine and parser.max_pictures == 0  # type: ignore[attr-defined]
    parsed = parser.parse(picture_book())
    assert "COVER TEXT" not in parsed.pages[0].text and parsed.warnings
    assert get_parser(EPUB, ocr=engine).ocr is engine  # type: ignore[attr-defined]
    assert get_parser(EPUB).ocr is None  # type: ignore[attr-defined]


# --- the real engine (RapidOCR) ---------------------------------------------------


@pytest.fixture(scope="module")
def rapidocr() -> RapidOcrEngine:
    pytest.importorskip("rapidocr_onnxruntime")
    return RapidOcrEngine(threads=2)


@pytest.mark.integration
def test_english_words_in_an_epub_picture_are_found(rapidocr: RapidOcrEngine) -> None:
    book = build_epub(
        [
            ("text/intro.xhtml", "<p>Introduction.</p>"),
            ("text/report.xhtml", '<p>The chart:</p><img src="../images/chart.png"/>'),
        ],
        {"images/chart.png": text_png(ENGLISH)},
    )
    intro, report = EpubParser(ocr=rapidocr).parse(book).pages
    assert "48213" in report.text and "revenue" in report.text.lower()
    assert report.text.index("48213") > report.text.index("The chart:")
    assert report.ocr_confidence is not None and report.ocr_confidence > 0.8
    assert "48213" not in intro.text and intro.ocr_confidence is None
