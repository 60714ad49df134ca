"""HTML to text: visible text only, blocks as paragraphs, title first."""

from __future__ import annotations

import pytest

from ingest.parsers.html import HtmlParser, html_to_text
from rag.errors import EmptyDocument

pytestmark = pytest.mark.unit

PAGE = """<!DOCTYPE html>
<html>
<head>
  <title>Release   notes</title>
  <style>p { color: red }</style>
  <script>var tracking = "do not index";</script>
</head>
<body>
  <nav><a href="/">Home</a> | <a href="/about">About</a></nav>
  <h1>Version 2.0</h1>
  <p>The new release
     adds <b>hybrid</b> search.<br>It also fixes bugs.</p>
  <!-- a comment nobody sees -->
  <ul><li>Faster ingest</li><li>Better citations</li></ul>
  <table><tr><th>Name</th><th>Value</th></tr><tr><td>k</td><td>60</td></tr></table>
  <script>console.log("tail script")</script>
</body>
</html>"""


def test_visible_text_keeps_block_structure() -> None:
    assert html_to_text(PAGE) == (
        "Release notes\n\n"
        "Version 2.0\n\n"
        "The new release adds hybrid search.\nIt also fixes bugs.\n\n"
        "Faster ingest\n\n"
        "Better citations\n\n"
        "| Name | Value |\n| --- | --- |\n| k | 60 |"
    )


def test_scripts_styles_nav_and_comments_are_dropped() -> None:
    text = html_to_text(PAGE)
    for hidden in ("tracking", "color: red", "Home", "About", "comment", "tail script"):
        assert hidden not in text


def test_title_is_not_repeated_when_the_body_starts_with_it() -> None:
    html = "<html><head><title>Guide</title></head><body><h1>Guide</h1><p>Text.</p></body></html>"
    assert html_to_text(html) == "Guide\n\nText."


def test_pre_keeps_its_line_breaks() -> None:
    assert html_to_text("<pre>line one\nline two</pre>") == "line one\nline two"


def test_declared_charset_is_used() -> None:
    html = (
        '<html><head><meta charset="gbk"><title>标题</title></head>'
        "<body><p>中文内容</p></body></html>"
    )
    document = HtmlParser().parse(html.encode("gbk"))
    assert document.media_type == "text/html"
    assert document.page_count == 1
    assert document.pages[0].text == "标题\n\n中文内容"


def test_undeclared_charset_is_detected() -> None:
    html = "<html><body><p>数字交互时代，数字拟人品。</p></body></html>"
    assert HtmlParser().parse(html.encode("gb18030")).pages[0].text == "数字交互时代，数字拟人品。"


def test_page_without_visible_text_is_empty() -> None:
    with pytest.raises(EmptyDocument, match="no visible text"):
        HtmlParser().parse(b"<html><head><script>x()</script></head><body> </body></html>")
