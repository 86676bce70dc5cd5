"""Every page of the UI in a state worth checking, for the accessibility and layout tests.

``PAGES`` maps a name to a function that brings a (fresh) page there: logged in or not, with
search results, with the queue's correction picker open, with a prompt-lab preview. Nothing here
decides a label, so the tour can run beside the tests that do.
"""

from __future__ import annotations

from typing import Callable

from playwright.sync_api import BrowserContext, Page

from tests.browser.conftest import TIMEOUT_MS, Accounts, expect, login, queue_url

QUEUE_GROUP = "concept"  # only looked at: the picker is opened, never saved


def _login_page(page: Page) -> None:
    page.goto("/auth/login")
    expect(page.get_by_test_id("login-form")).to_be_visible()


def _dashboard(page: Page) -> None:
    page.goto("/")
    expect(page.get_by_test_id("groups")).to_be_visible()


def _queue(page: Page) -> None:
    page.goto(queue_url(QUEUE_GROUP, status="", sort="id"))
    expect(page.get_by_test_id("card").first).to_be_visible()


def _queue_picker(page: Page) -> None:
    _queue(page)
    page.get_by_test_id("card").first.focus()
    page.keyboard.press("c")  # the correction picker, the way a reviewer opens it
    expect(page.locator('[data-testid="correct-form"]:visible')).to_have_count(1)


def _focus_mode(page: Page) -> None:
    _queue(page)
    page.get_by_test_id("card").first.focus()
    page.keyboard.press("f")  # one image at a time, large, with every decision key
    expect(page.get_by_test_id("focus")).to_be_visible()
    expect(page.get_by_test_id("focus-image")).to_be_visible()


def _detail(page: Page) -> None:
    _queue(page)
    page.goto(page.get_by_test_id("detail-link").first.get_attribute("href"))
    expect(page.get_by_test_id("full-image")).to_be_visible()


def _search(page: Page) -> None:
    page.goto("/search?q=metal+hammer+with+wooden+handle")
    expect(page.get_by_test_id("hit").first).to_be_visible()


def _lab(page: Page) -> None:
    page.goto("/lab?set=workshop&group=concept&option=hammer")
    page.get_by_test_id("lab-preview").click()
    expect(page.get_by_test_id("lab-match").first).to_be_visible()


def _preferences(page: Page) -> None:
    page.goto("/preferences")
    expect(page.get_by_test_id("prefs-form")).to_be_visible()


def _map(page: Page) -> None:
    page.goto("/map")  # painted when a layout exists (test_map_page makes one), else says how to make it
    expect(page.get_by_test_id("map-summary").or_(page.get_by_test_id("map-missing")).first).to_be_visible()


def _error(page: Page) -> None:
    response = page.goto("/no/such/page")
    assert response is not None and response.status == 404
    expect(page.get_by_test_id("error-status")).to_have_text("Error 404")


# name -> (who is logged in, how to get there)
PAGES: dict[str, tuple[str | None, Callable[[Page], None]]] = {
    "login": (None, _login_page),
    "dashboard": (Accounts.admin, _dashboard),
    "queue": (Accounts.admin, _queue),
    "queue-picker": (Accounts.admin, _queue_picker),
    "focus-mode": (Accounts.admin, _focus_mode),
    "detail": (Accounts.admin, _detail),
    "search": (Accounts.admin, _search),
    "lab": (Accounts.admin, _lab),
    "error-404": (Accounts.admin, _error),
    "preferences": (Accounts.admin, _preferences),
    "map": (Accounts.admin, _map),
}


def visit(context: BrowserContext, name: str) -> Page:
    """A new page of ``context`` showing page ``name`` of :data:`PAGES`, logged in as it needs."""
    user, go = PAGES[name]
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    if user is not None:
        login(page, user)
    go(page)
    page.wait_for_load_state("load")
    return page
