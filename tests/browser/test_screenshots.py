"""Screenshots of the main pages at 1280×800, checked to show real content.

They go to ``LABELER_SCREENSHOT_DIR`` when set (``scripts/screenshots.py`` sets it to
``docs/screenshots`` for the README), else to the test's temporary folder, so an ordinary test
run never rewrites committed files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page

from tests.browser.conftest import VIEWPORT, Accounts, Contexts, expect, login, queue_url, wait_for_images

pytestmark = pytest.mark.browser

MAX_BYTES = 300_000
SEARCH_QUERY = "metal hammer with wooden handle"


def save(page: Page, folder: Path, name: str) -> Path:
    """Screenshot the viewport as a PNG, shrunk to a palette image when it is too big for the README."""
    wait_for_images(page)
    page.mouse.move(0, 0)  # no hover effects in the picture
    path = folder / f"{name}.png"
    page.screenshot(path=str(path))
    if path.stat().st_size > MAX_BYTES:
        with Image.open(path) as shot:
            shot.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    with Image.open(path) as shot:
        assert shot.size == (1280, 800)
        # Not a blank page: a real page has many distinct colours.
        assert len(shot.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50, name
    assert path.stat().st_size <= MAX_BYTES, (name, path.stat().st_size)
    return path


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("LABELER_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_screenshots_of_the_main_pages(contexts: Contexts, shots: Path) -> None:
    page = contexts.page()
    page.goto("/auth/login")
    page.get_by_test_id("login-username").fill(Accounts.admin)
    save(page, shots, "login")

    # The reviewer who worked these queues in the other browser tests: her queue leases (5 minutes)
    # hide their cards from anyone else's proposed queue, never from her own.
    page = contexts.page(Accounts.reviewer)
    page.goto(queue_url("concept", sort="confidence"))  # the surest first: accepting them is right
    cards = page.get_by_test_id("card")
    expect(cards.first).to_be_visible()
    assert cards.count() >= 12
    # A few decisions, so the pictures show reviewed states and progress.
    for i, (key, status) in enumerate((("a", "accepted"),) * 3):
        page.keyboard.press(key)
        # Focus moves on only when the server answered; the next key must wait for it.
        expect(cards.nth(i).get_by_test_id("status")).to_have_text(status)
        expect(cards.nth(i + 1)).to_have_class(re.compile(r"\bfocused\b"))
    page.keyboard.press("x")
    page.keyboard.press("j")
    page.keyboard.press("x")
    expect(page.get_by_test_id("selected-count")).to_have_text("2")
    save(page, shots, "review-queue")

    page.keyboard.press("Shift+H")  # the history of decisions, each with its undo
    expect(page.get_by_test_id("history-row").first).to_be_visible()
    save(page, shots, "history")
    page.keyboard.press("Escape")
    page.keyboard.press("Shift+T")  # accept above the threshold: the preview, 20 at random first
    expect(page.get_by_test_id("above-card").first).to_be_visible()
    save(page, shots, "accept-above-preview")
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("above-dialog")).to_be_hidden()

    page.keyboard.press("Enter")  # the shortcut opens the focused image's detail page
    expect(page.get_by_test_id("full-image")).to_be_visible()
    expect(page.get_by_test_id("label-concept")).to_be_visible()
    expect(page.get_by_test_id("explain-error")).to_have_count(0)
    save(page, shots, "image-detail")

    page.goto("/")
    expect(page.get_by_test_id("group-concept")).to_be_visible()
    expect(page.get_by_test_id("progress-concept")).not_to_contain_text("Reviewed 0 ")
    save(page, shots, "dashboard")

    page.goto("/search")
    page.get_by_test_id("search-query").fill(SEARCH_QUERY)
    page.get_by_test_id("search-submit").click()
    expect(page.get_by_test_id("hit").first).to_be_visible()
    save(page, shots, "search")

    # Dark mode, as a system set to dark shows it (the default preference follows the system).
    dark = contexts.browser.new_context(base_url=contexts.demo.url, viewport=VIEWPORT, color_scheme="dark")
    contexts.opened.append(dark)
    dark_page = dark.new_page()
    login(dark_page, Accounts.reviewer)
    dark_page.goto(queue_url("concept", status="", sort="confidence"))
    expect(dark_page.get_by_test_id("card").first).to_be_visible()
    save(dark_page, shots, "review-queue-dark")

    page = contexts.page(Accounts.admin)  # the prompt lab is for admins
    page.goto("/lab?set=workshop&group=concept&option=hammer")
    page.get_by_test_id("lab-preview").click()
    expect(page.get_by_test_id("lab-matches")).to_be_visible()
    expect(page.get_by_test_id("lab-match").first).to_be_visible()
    save(page, shots, "prompt-lab")
    page.get_by_test_id("lab-result").evaluate("(section) => section.scrollIntoView()")
    save(page, shots, "prompt-lab-preview")

