"""Phone by thumb (390 × 844, touch): every control at least 44 × 44 px, the first card visible
without scrolling, a correction to one of the model's next best options in one tap, Correct
opening the option list rather than the on-screen keyboard, and focus mode's options tappable."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import TIMEOUT_MS, Accounts, Contexts, Demo, api, expect, login, queue_url
from tests.browser.test_layout import small_targets

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3, "is_mobile": True, "has_touch": True}
GROUP = "material"  # the correct-group of test_review; decided here by another reviewer, on other cards
MIN_PX = 44

ALSO = ("textarea", "summary", "a.button")  # beyond the layout test's controls: every control
TYPING = "() => document.activeElement.matches('input:not([type=checkbox]), textarea')"


def phone(contexts: Contexts, user: str) -> Page:
    context = contexts.browser.new_context(base_url=contexts.demo.url, **PHONE)
    context.set_default_timeout(TIMEOUT_MS)
    contexts.opened.append(context)
    page = context.new_page()
    login(page, user)
    return page


def test_every_control_on_the_review_pages_is_a_thumb_target(contexts: Contexts, demo: Demo) -> None:
    page = phone(contexts, Accounts.second)
    for path in ("/", queue_url(GROUP, status="")):
        page.goto(path)
        page.wait_for_load_state("load")
        assert small_targets(page, MIN_PX, ALSO) == [], path
    page.get_by_test_id("queue-tools").locator("summary").tap()  # the folded tools, opened
    assert small_targets(page, MIN_PX, ALSO) == []
    image_id = api(page, f"/api/labels?group={GROUP}&limit=1&sort=id")["labels"][0]["image_id"]
    page.goto(f"/images/{image_id}")
    expect(page.get_by_test_id("full-image")).to_be_visible()
    assert small_targets(page, MIN_PX, ALSO) == []


def test_a_correction_takes_one_tap_and_no_keyboard(contexts: Contexts, demo: Demo) -> None:
    page = phone(contexts, Accounts.second)
    page.goto(queue_url(GROUP, status=""))  # every status: a proposed queue would claim test_review's cards
    first = page.get_by_test_id("card").first
    expect(first).to_be_visible()
    box = first.bounding_box()
    assert box["y"] + box["height"] <= PHONE["viewport"]["height"], box  # whole, without scrolling

    label_id = int(first.get_attribute("data-label-id"))
    alternative = first.locator("button[data-option]").first
    option = alternative.get_attribute("data-option")
    alternative.tap()  # tap 1: done
    expect(first.get_by_test_id("status")).to_have_text("corrected")
    expect(first.get_by_test_id("value")).to_have_text(option)
    assert demo.query("SELECT value, status FROM labels WHERE id = ?", label_id) == [(option, "corrected")]
    assert not page.evaluate(TYPING)

    # Correct opens the option list, not a text field: the on-screen keyboard stays down.
    second = page.get_by_test_id("card").nth(1)
    second.get_by_test_id("correct").tap()
    expect(page.get_by_test_id("correct-form")).to_be_visible()
    assert not page.evaluate(TYPING)
    expect(page.get_by_test_id("correct-select")).to_be_focused()
    page.get_by_test_id("correct-cancel").tap()

    # Focus mode: its option list is tappable, and corrects the image shown.
    second.tap(position={"x": 60, "y": 8})
    page.get_by_test_id("focus-open").tap()
    expect(page.get_by_test_id("focus")).to_be_visible()
    shown = int(page.locator('[data-testid="card"].focused').get_attribute("data-label-id"))
    now = page.locator('[data-testid="card"].focused').get_by_test_id("value").inner_text()
    target = page.get_by_test_id("focus-options").locator(f'button[data-option]:not([data-option="{now}"])').last
    value = target.get_attribute("data-option")
    target.tap()
    expect(page.locator(f'[data-testid="card"][data-label-id="{shown}"] [data-testid="status"]')).to_have_text(
        "corrected")
    assert demo.query("SELECT value FROM labels WHERE id = ?", shown) == [(value,)]


def _swipe(page: Page, dx: int, dy: int = 0, steps: int = 6) -> None:
    """A real one-finger swipe across the middle of focus mode's image, as touch events."""
    box = page.get_by_test_id("focus-view").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    cdp = page.context.new_cdp_session(page)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
    for step in range(1, steps + 1):
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove",
                                              "touchPoints": [{"x": x + dx * step / steps, "y": y + dy * step / steps}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def test_in_focus_mode_a_swipe_left_skips_and_a_swipe_right_goes_back(contexts: Contexts, demo: Demo) -> None:
    page = phone(contexts, Accounts.second)
    page.goto(queue_url(GROUP, status=""))
    third = page.get_by_test_id("card").nth(2)
    third.tap(position={"x": 60, "y": 8})
    page.get_by_test_id("focus-open").tap()
    expect(page.get_by_test_id("focus")).to_be_visible()
    focused = page.locator('[data-testid="card"].focused')
    shown = int(focused.get_attribute("data-label-id"))

    _swipe(page, dx=0, dy=-150)  # mostly vertical: no swipe
    expect(focused).to_have_attribute("data-label-id", str(shown))

    with page.expect_response(lambda r: r.request.method == "POST" and f"/labels/{shown}/" in r.url) as answer:
        _swipe(page, dx=-160)  # to the left: skip, and the next card comes up
    assert answer.value.ok, answer.value.text()
    expect(focused).not_to_have_attribute("data-label-id", str(shown))
    user = demo.user_id(Accounts.second)
    assert demo.query("SELECT count(*) FROM review_skips WHERE label_id = ? AND user_id = ?", shown, user) == [(1,)]
    after = int(focused.get_attribute("data-label-id"))

    _swipe(page, dx=160)  # to the right: back one card
    expect(focused).not_to_have_attribute("data-label-id", str(after))
