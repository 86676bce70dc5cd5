"""The dashboard as a first screen, in a real browser: the next thing to do above the fold, one
primary button that opens the collection's main group, compact group rows, and a Review link
that opens the main group too."""

from __future__ import annotations

import re

import pytest

from labeler.core.prompts import load_prompt_set
from tests.browser.conftest import Accounts, Contexts, Demo, expect

pytestmark = pytest.mark.browser

MAIN = next(iter(load_prompt_set("workshop").groups))  # the demo is labeled with workshop


def test_the_first_screen_leads_to_the_main_group(contexts: Contexts, demo: Demo) -> None:
    page = contexts.page(Accounts.second)
    page.goto("/")
    start = page.get_by_test_id("start-review")
    expect(start).to_be_visible()
    box = start.bounding_box()
    assert box["y"] + box["height"] <= page.viewport_size["height"] / 2, box  # the first thing seen
    assert box["height"] >= 44
    expect(page.get_by_test_id("next-text")).to_have_text(re.compile(rf"^(Review {MAIN}: [\d,]+ to go|Review \w+: [\d,]+ to go|Every label has been decided)$"))
    groups = page.locator('[data-testid^="group-"]:not([data-testid^="group-more"])')
    assert groups.first.get_attribute("data-testid") == f"group-{MAIN}"
    # Compact rows: every group fits in about one screen, not 2,000 px of cards.
    rows = groups.evaluate_all("(gs) => gs.map((g) => g.getBoundingClientRect().height)")
    assert max(rows) <= 140, rows
    assert page.get_by_test_id("groups").bounding_box()["height"] <= 140 * len(rows)  # was 2,091 px for 8

    # Where the buttons lead, without loading that queue: a proposed queue claims its cards, and
    # the main group's belong to test_review (GROUP_OF). The web tests check the queue it opens.
    opened: list[str] = []
    page.route("**/review*", lambda route: (opened.append(route.request.url),
                                            route.fulfill(status=200, content_type="text/html", body="<p>queue</p>")))
    start.click()
    expect(page).to_have_url(re.compile(r"/review\?group=\w+$"))
    assert opened[-1].endswith(f"/review?group={page.url.rsplit('=', 1)[1]}")
    page.goto("/")
    page.get_by_test_id("nav-review").click()
    expect(page).to_have_url(re.compile(r"/review$"))  # no group: the server opens the main one
