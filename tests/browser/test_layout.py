"""Every page fits a phone (390 × 844) and a desktop at 200% zoom (1280 × 800 at 200% is a 640 × 400
CSS-pixel viewport at device scale 2): no sideways scroll, no control poking out of the viewport,
and touch targets of at least 24 × 24 px."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import Contexts
from tests.browser.tour import PAGES, visit

pytestmark = pytest.mark.browser

SIZES = {
    "phone": {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3, "is_mobile": True,
              "has_touch": True},
    "zoom-200": {"viewport": {"width": 640, "height": 400}, "device_scale_factor": 2},
}
MIN_TARGET_PX = 24

# The document's sideways overflow in CSS px, and the visible controls whose box ends past the
# viewport's right edge (a select or dropdown spilling out of its card shows up here).
OVERFLOW = """() => {
  const root = document.documentElement;
  const width = root.clientWidth;
  const outside = Array.from(document.querySelectorAll('input, select, textarea, button, a, img, table, pre'))
    .filter((el) => el.getClientRects().length && getComputedStyle(el).visibility !== 'hidden')
    .filter((el) => el.getBoundingClientRect().right > width + 0.5 || el.getBoundingClientRect().left < -0.5)
    .map((el) => `${el.tagName.toLowerCase()}[data-testid=${el.dataset.testid || ''}] ` +
                 `${Math.round(el.getBoundingClientRect().left)}..${Math.round(el.getBoundingClientRect().right)}`);
  return {overflow: root.scrollWidth - width, width, outside: outside.slice(0, 8)};
}"""

# Controls a finger or a shaky hand must hit: form controls, and links that stand on their own
# (navigation, paging, lists and tables of links), not links inside a sentence.
TARGETS = "input:not([type=hidden]), select, button, nav a, li > a, td a, th a, .statuses a, .pages a"
SMALL_TARGETS = """([selector, min]) => Array.from(document.querySelectorAll(selector))
  .filter((el) => el.getClientRects().length)
  .map((el) => [el, el.getBoundingClientRect()])
  .filter(([el, r]) => r.width < min - 0.5 || r.height < min - 0.5)
  .map(([el, r]) => `${el.tagName.toLowerCase()}[data-testid=${el.dataset.testid || ''}] ` +
                    `${(el.textContent || el.getAttribute('aria-label') || '').trim().slice(0, 20)} ` +
                    `${r.width.toFixed(1)}x${r.height.toFixed(1)}`)
  .slice(0, 8)"""


def small_targets(page: Page, min_px: float, also: tuple[str, ...] = ()) -> list[str]:
    """The visible controls (``TARGETS``, and the selectors ``also``) smaller than ``min_px`` either way."""
    return page.evaluate(SMALL_TARGETS, [", ".join((TARGETS, *also)), min_px])


def _page(contexts: Contexts, size: str, name: str) -> Page:
    context = contexts.browser.new_context(base_url=contexts.demo.url, **SIZES[size])
    contexts.opened.append(context)
    return visit(context, name)


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("name", list(PAGES))
def test_no_sideways_scroll(contexts: Contexts, name: str, size: str) -> None:
    page = _page(contexts, size, name)
    measured = page.evaluate(OVERFLOW)
    assert measured["width"] == SIZES[size]["viewport"]["width"]  # the emulation took
    assert measured["overflow"] == 0 and not measured["outside"], (name, size, measured)


@pytest.mark.parametrize("name", list(PAGES))
def test_touch_targets_are_at_least_24_px(contexts: Contexts, name: str) -> None:
    page = _page(contexts, "phone", name)
    assert small_targets(page, MIN_TARGET_PX) == [], name
