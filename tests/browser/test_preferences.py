"""Preferences in a real browser: a user's own key acts (and the default no longer does), the
card hints and the help name it, and their dark theme is on; another user's pages are unchanged."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import GROUP_OF, Accounts, Contexts, Demo, expect, queue_url

pytestmark = pytest.mark.browser


def _put(page, body: dict):
    csrf = page.evaluate("() => document.querySelector('meta[name=\"csrf-token\"]').content")
    return page.request.put("/api/preferences", headers={"X-CSRF-Token": csrf}, data=body)


def test_own_keys_and_dark_theme_follow_the_user(contexts: Contexts, demo: Demo) -> None:
    page = contexts.page(Accounts.reviewer)
    refused = _put(page, {"keys": {"accept": "Ctrl+W"}})
    assert refused.status == 400 and "Ctrl+W is reserved" in refused.json()["error"]
    assert _put(page, {"theme": "dark", "keys": {"accept": "Shift+Y"}}).ok
    try:
        page.goto(queue_url(GROUP_OF["prefs"]))
        assert page.evaluate("() => getComputedStyle(document.body).backgroundColor") == "rgb(18, 21, 28)"
        cards = page.get_by_test_id("card")
        first = cards.first
        expect(first).to_have_class(re.compile(r"\bfocused\b"))
        expect(first.get_by_test_id("accept")).to_have_attribute("aria-keyshortcuts", "Shift+Y")
        expect(page.get_by_test_id("shortcuts")).to_contain_text("Shift+Y")
        label_id = int(first.get_attribute("data-label-id"))
        page.keyboard.press("a")  # the default key does nothing now
        page.keyboard.press("Shift+Y")
        expect(first.get_by_test_id("status")).to_have_text("accepted")
        assert demo.query("SELECT status FROM labels WHERE id = ?", label_id)[0][0] == "accepted"
        expect(cards.nth(1)).to_have_class(re.compile(r"\bfocused\b"))  # one decision, one move on

        other = contexts.page(Accounts.second)  # another user: the defaults, light
        other.goto("/")
        assert other.evaluate("() => getComputedStyle(document.body).backgroundColor") == "rgb(246, 247, 249)"
    finally:
        assert _put(page, {"theme": "system", "keys": {}}).ok
