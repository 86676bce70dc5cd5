"""The queue's grid built for bulk work, at 1440 × 900: at least 20 cards fully visible at the
default density, the proposal as a pill on the image, one primary action per card, the file name
on hover, cards that keep their height after a correction, and the S/M/L density control."""

from __future__ import annotations

import pytest

from tests.browser.conftest import TIMEOUT_MS, Accounts, Contexts, Demo, expect, login, queue_url

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1440, "height": 900}
GROUP = "size"  # bulk_threshold's group: one correction here, by another reviewer
FULLY_VISIBLE = """() => Array.from(document.querySelectorAll('[data-testid=card]')).filter((c) => {
  const r = c.getBoundingClientRect();
  return r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight && r.right <= innerWidth; }).length"""


def test_the_grid_shows_twenty_cards_and_keeps_them_steady(contexts: Contexts, demo: Demo) -> None:
    context = contexts.browser.new_context(base_url=demo.url, viewport=DESKTOP)
    context.set_default_timeout(TIMEOUT_MS)
    contexts.opened.append(context)
    page = context.new_page()
    login(page, Accounts.second)
    page.evaluate("() => localStorage.removeItem('review-density')")
    page.goto(queue_url(GROUP, status=""))
    cards = page.get_by_test_id("card")
    expect(cards.first).to_be_visible()
    assert page.get_by_test_id("density").input_value() == "m"
    assert page.evaluate(FULLY_VISIBLE) >= 20

    first = cards.first
    image = first.locator("img").bounding_box()
    pill = first.get_by_test_id("value").bounding_box()
    assert image["y"] < pill["y"] and pill["y"] + pill["height"] <= image["y"] + image["height"], (image, pill)
    # One primary action: Accept is filled, the others are not.
    colours = first.locator(".actions button").evaluate_all(
        "(bs) => bs.map((b) => [b.dataset.action, getComputedStyle(b).backgroundColor])")
    filled = [action for action, colour in colours if colour not in ("rgba(0, 0, 0, 0)", "transparent")]
    assert filled == ["accept"], colours
    # The file name shows over the image on hover (and on the current card).
    name = first.get_by_test_id("detail-link").get_attribute("data-name")
    assert name and name.startswith("img_")
    first.hover()
    shown = first.get_by_test_id("detail-link").evaluate(
        "(a) => [getComputedStyle(a, '::after').content, getComputedStyle(a, '::after').opacity]")
    assert shown == [f'"{name}"', "1"], shown

    # A correction leaves every card the height it had: the current card's buttons stay put.
    label_id = page.locator('[data-testid="card"].status-proposed').first.get_attribute("data-label-id")
    proposed = page.locator(f'[data-testid="card"][data-label-id="{label_id}"]')
    height = proposed.bounding_box()["height"]
    proposed.locator("button[data-option]").first.click()
    expect(proposed.get_by_test_id("status")).to_have_text("corrected")
    assert abs(proposed.bounding_box()["height"] - height) < 1

    page.get_by_test_id("density").select_option("s")
    assert page.evaluate(FULLY_VISIBLE) > 20
    page.reload()
    expect(cards.first).to_be_visible()
    assert page.get_by_test_id("density").input_value() == "s"  # kept
    page.get_by_test_id("density").select_option("l")
    assert page.evaluate(FULLY_VISIBLE) < 20
