"""The chat page in a real headless Chromium (Debian's package, driven by Playwright).

`make test` installs chromium when it is missing; the screenshot is kept in tests/artifacts/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from api.app import create_app
from index.documents import parse_document
from index.store import build_index
from qa.config import Settings
from qa.pipeline import Pipeline
from qa.reader.reader import FakeReader
from tests.conftest import TINY, TINY_SCRIPT, live_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).parent / "artifacts"
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs it)")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

HOSTILE = "The hostile trust wrote <img src=x onerror=\"document.title='pwned'\"> into 7 reports."


@pytest.fixture(scope="module")
def page_url(embedder):
    docs = [parse_document(k, v) for k, v in TINY.items()] + [parse_document("gamma", HOSTILE)]
    reader = FakeReader({**TINY_SCRIPT, "reports": "7 reports"})
    pipeline = Pipeline(build_index(docs, embedder), embedder, None, reader=reader)
    with live_server(create_app(Settings(), pipeline=pipeline)) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def _ask(page, question: str) -> None:
    page.fill("#question", question)
    page.press("#question", "Enter")


def test_ask_see_cited_answer_and_open_the_quote(browser, page_url):
    page = browser.new_page()
    external = []
    page.on("request", lambda r: None if r.url.startswith(page_url) else external.append(r.url))
    page.goto(page_url)
    _ask(page, "How many libraries does the council run?")
    cite = page.locator("button.cite").first
    cite.wait_for(timeout=15000)
    assert page.locator(".a .text").first.inner_text().startswith("12: ")
    cite.click()
    source = page.locator(".source").first
    assert "The council runs 12 libraries and 3 swimming pools across Northtown." in source.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat-answer.png"), full_page=True)
    # A follow-up keeps the conversation.
    _ask(page, "And how many swimming pools?")
    page.locator(".turn").nth(1).locator("button.cite").first.wait_for(timeout=15000)
    assert page.locator(".turn").nth(1).locator(".a .text").inner_text().startswith("3 swimming pools: ")
    assert external == []


def test_abstention_state(browser, page_url):
    page = browser.new_page()
    page.goto(page_url)
    _ask(page, "What is the capital of Australia?")
    badge = page.locator(".badge")
    badge.wait_for(timeout=15000)
    assert badge.inner_text() == "Not in the articles"
    assert page.locator("button.cite").count() == 0
    # it says the closest passages are listed, and lists them
    assert "closest passages" in page.locator(".a .text").inner_text()
    closest = page.locator(".closest .source")
    assert closest.count() >= 1 and "Northtown" in page.locator(".closest").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat-abstained.png"), full_page=True)


def test_documents_and_answers_render_as_text_not_html(browser, page_url):
    page = browser.new_page()
    page.goto(page_url)
    _ask(page, "How many reports did the hostile trust write into?")
    page.locator("button.cite").first.wait_for(timeout=15000)
    page.locator("button.cite").first.click()
    assert "<img src=x" in page.locator(".source").first.inner_text()
    assert page.locator(".a img").count() == 0
    assert page.title() == "News QA"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat-hostile.png"), full_page=True)
