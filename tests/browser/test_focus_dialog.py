"""Focus mode keeps the focus: it is a modal dialog whose Tab and Shift+Tab cycle inside it, and
Esc gives the focus back to the card it was opened from. Real server, real Chromium."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import GROUP_OF, Accounts, Contexts, Demo, expect, queue_url

pytestmark = pytest.mark.browser

INSIDE = "() => document.querySelector('[data-testid=focus]').contains(document.activeElement)"


def test_tab_cycles_inside_focus_mode_and_esc_returns_to_the_card(contexts: Contexts, demo: Demo) -> None:
    page = contexts.page(Accounts.reviewer)
    page.goto(queue_url(GROUP_OF["focus_mode"]))
    cards = page.get_by_test_id("card")
    expect(cards.first).to_have_class(re.compile(r"\bfocused\b"))
    page.keyboard.press("j")
    page.keyboard.press("j")  # open it from the third card, not the first
    origin = cards.nth(2).get_attribute("data-label-id")
    expect(cards.nth(2)).to_be_focused()
    page.keyboard.press("f")
    dialog = page.get_by_test_id("focus")
    expect(dialog).to_be_visible()
    assert dialog.get_attribute("role") == "dialog" and dialog.get_attribute("aria-modal") == "true"

    controls = page.evaluate("() => Array.from(document.querySelectorAll('[data-testid=focus] button'))"
                             ".filter((b) => b.getClientRects().length).length")
    assert controls >= 5
    seen = set()
    for _ in range(controls + 3):  # once round, and on past the end: the focus wraps, never leaves
        page.keyboard.press("Tab")
        assert page.evaluate(INSIDE), "Tab left the dialog"
        seen.add(page.evaluate("() => document.activeElement.outerHTML"))
    assert len(seen) == controls  # every control reached, none outside
    for _ in range(controls + 3):
        page.keyboard.press("Shift+Tab")
        assert page.evaluate(INSIDE), "Shift+Tab left the dialog"
    # A click outside (on the page behind) does not take the focus out either.
    page.evaluate("() => document.querySelector('[data-testid=help-toggle]').focus()")
    assert page.evaluate(INSIDE)

    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.locator(f'[data-testid="card"][data-label-id="{origin}"]')).to_be_focused()
    page.keyboard.press("Tab")  # with the dialog closed, Tab walks the page again
    assert not page.evaluate("() => document.activeElement.closest('[data-testid=focus]')")
