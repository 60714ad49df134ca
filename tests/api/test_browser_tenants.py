"""The web page with a tenant key: it lists, shows and answers from the key's collections only.

Drives Debian's Chromium with Playwright against a live server that has an
admin key and a tenant key (skipped, saying why, without ``/usr/bin/chromium``).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.live_server import LiveServer
from tests.api.test_browser import TIMEOUT_MS, browser_page
from tests.conftest import fast_settings

pytestmark = [pytest.mark.slow, pytest.mark.integration]

__all__ = ["browser_page"]  # the fixture, imported so pytest finds it here

TEXTS = {
    "alpha": "The alpha team's falcon research budget is 4217 euros a year.",
    "hq-ledger": "The ledger's falcon research budget is 5560 euros a year.",
}


@pytest.fixture
def tenant_server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(base URL, tenant key) of a live server holding one document per collection."""
    admin, tenant = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    settings = fast_settings(
        tmp_path, api={"api_keys": [admin], "key_collections": {tenant: ["alpha"]}}
    )
    with LiveServer(create_app(settings)) as server:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {admin}"}, timeout=30
        ) as client:
            for collection, text in TEXTS.items():
                response = client.post(
                    "/documents",
                    files=[("files", (f"{collection}.txt", text.encode(), "text/plain"))],
                    data={"collection": collection},
                )
                assert response.status_code == 202, response.text
                job_id = response.json()["jobs"][0]["job_id"]
                for _ in range(600):
                    if client.get(f"/jobs/{job_id}").json()["status"] == "succeeded":
                        break
                    time.sleep(0.05)
                else:
                    raise AssertionError(f"job {job_id} did not finish")
        yield server.url, tenant


def test_the_page_shows_only_the_tenants_collection(
    tenant_server: tuple[str, str], browser_page: object
) -> None:
    from playwright.sync_api import Page, expect

    page: Page = browser_page  # type: ignore[assignment]
    url, key = tenant_server
    failures: list[str] = []
    page.on(
        "response",
        lambda res: failures.append(f"{res.status} {res.url}") if res.status >= 400 else None,
    )
    # The key as the page's key form stores it.
    page.add_init_script(f"window.localStorage.setItem('rag_api_key', {key!r});")
    page.goto(url + "/")
    options = page.locator("#collection-select option")
    expect(options).to_have_count(1)
    expect(options.first).to_have_attribute("value", "alpha")
    expect(page.locator(".doc-item", has_text="alpha.txt")).to_have_count(1)
    expect(page.locator(".doc-item")).to_have_count(1)

    page.fill("#chat-input", "What is the falcon research budget?")
    page.press("#chat-input", "Enter")
    answer = page.locator(".msg.assistant").last
    expect(answer).to_have_class(re.compile(r"\bdone\b"), timeout=TIMEOUT_MS)
    text = answer.inner_text()
    assert "4217" in text and "5560" not in text and "hq-ledger" not in text, text
    expect(answer.locator(".source-list li")).to_have_count(1)
    expect(answer.locator(".source-list li").first).to_contain_text("alpha.txt")
    assert "hq-ledger" not in page.content()
    assert not failures, failures
