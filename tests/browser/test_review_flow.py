"""The review flow keyboard-only in a real browser: keys that do what the focus says, no dropped keys,
skips and undo that last across reloads, focus mode, paging to the next batch, and axe-core.

Checked on the page and in the catalog (the SQLite file itself).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import GROUP_OF, Accounts, Contexts, Demo, api, expect, queue_url

pytestmark = pytest.mark.browser


def open_queue(page: Page, group: str, sort: str = "id"):
    page.goto(queue_url(group, sort=sort))
    cards = page.get_by_test_id("card")
    expect(cards.first).to_be_visible()
    expect(cards.first).to_have_class(re.compile(r"\bfocused\b"))
    return cards


def label_ids(cards) -> list[int]:
    return [int(i) for i in cards.evaluate_all("(cs) => cs.map((c) => c.dataset.labelId)")]


def status_of(demo: Demo, label_id: int) -> tuple:
    return demo.query("SELECT status, reviewed_by FROM labels WHERE id = ?", label_id)[0]


def test_five_fast_presses_make_five_decisions_in_order(contexts: Contexts, demo: Demo) -> None:
    page = contexts.page(Accounts.reviewer)
    cards = open_queue(page, GROUP_OF["flow"])
    ids = label_ids(cards)[:6]
    for _ in range(5):
        page.keyboard.press("a")  # no waiting between presses: the requests queue behind each other
    expect(cards.nth(5)).to_have_class(re.compile(r"\bfocused\b"))  # the cursor moved on at once
    for i in range(5):
        expect(cards.nth(i).get_by_test_id("status")).to_have_text("accepted")
    reviewer = demo.user_id(Accounts.reviewer)
    assert [status_of(demo, i) for i in ids[:5]] == [("accepted", reviewer)] * 5
    assert status_of(demo, ids[5])[0] == "proposed"
    # Progress follows: the reviewed count is read from the catalog, and this session's pace shows.
    expect(page.get_by_test_id("progress-reviewed")).to_have_text(
        str(demo.query("SELECT COUNT(*) FROM labels WHERE \"group\" = ? AND status != 'proposed'",
                       GROUP_OF["flow"])[0][0]))
    assert float(page.get_by_test_id("progress-rate").inner_text()) >= 5


def test_undo_and_skip_last_across_a_reload(contexts: Contexts, demo: Demo) -> None:
    page = contexts.page(Accounts.reviewer)
    cards = open_queue(page, GROUP_OF["flow"])
    rejected, skipped = label_ids(cards)[:2]
    page.keyboard.press("r")
    expect(cards.first.get_by_test_id("status")).to_have_text("rejected")
    page.keyboard.press("s")
    expect(cards.nth(2)).to_have_class(re.compile(r"\bfocused\b"))
    page.reload()
    ids = label_ids(open_queue(page, GROUP_OF["flow"]))
    assert rejected not in ids and skipped not in ids[:-1]  # the skipped one is last, if on this page at all
    page.keyboard.press("u")  # the page never saw the decision: the server remembers it
    restored = page.locator(f'[data-testid="card"][data-label-id="{rejected}"]')
    expect(restored.get_by_test_id("status")).to_have_text("proposed")
    expect(restored).to_have_class(re.compile(r"\bfocused\b"))
    assert status_of(demo, rejected) == ("proposed", None)
    queue = api(page, f"/api/review/progress?group={GROUP_OF['flow']}")
    assert queue["remaining"] > 0


def test_a_refused_decision_shows_on_its_card_and_the_cursor_stays(contexts: Contexts, demo: Demo) -> None:
    rita = contexts.page(Accounts.reviewer)
    rob = contexts.page(Accounts.second)
    cards = open_queue(rita, GROUP_OF["flow"])
    first, second = label_ids(cards)[:2]
    label = api(rob, f"/api/labels/{first}")
    csrf = rob.evaluate("() => document.querySelector('meta[name=\"csrf-token\"]').content")
    answer = rob.request.post(f"/api/labels/{first}/review", data={"action": "reject", "version": label["version"]},
                              headers={"X-CSRF-Token": csrf})
    assert answer.ok
    rita.keyboard.press("a")  # on a stale view: refused
    error = cards.first.get_by_test_id("card-error")
    expect(error).to_contain_text("proposal changed: ")
    expect(error).to_contain_text("→ (none of these)")
    expect(rita.get_by_test_id("error-banner")).to_contain_text("changed by someone else")
    expect(cards.first.get_by_test_id("status")).to_have_text("rejected")  # showing what rob decided
    # The cursor never moves back on a refusal: the next key applies to the card it is on.
    expect(cards.nth(1)).to_have_class(re.compile(r"\bfocused\b"))
    rita.keyboard.press("a")
    expect(cards.nth(1).get_by_test_id("status")).to_have_text("accepted")
    expect(error).to_be_visible()  # the refused card still says why, until a fresh key on it
    assert demo.query("SELECT status, reviewed_by FROM labels WHERE id = ?", first)[0] == \
        ("rejected", demo.user_id(Accounts.second))
    assert status_of(demo, second) == ("accepted", demo.user_id(Accounts.reviewer))


def test_enter_and_space_activate_the_focused_control(contexts: Contexts) -> None:
    page = contexts.page(Accounts.reviewer)
    open_queue(page, GROUP_OF["flow"])
    help_toggle = page.get_by_test_id("help-toggle")
    expect(page.get_by_test_id("shortcuts")).to_be_hidden()  # the help starts hidden
    help_toggle.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("shortcuts")).to_be_visible()
    page.keyboard.press("Space")
    expect(page.get_by_test_id("shortcuts")).to_be_hidden()
    url = page.url
    page.get_by_test_id("next-page").focus()
    page.keyboard.press("Enter")  # follows the link; it does not open a card
    page.wait_for_url(re.compile(r"after="))
    assert page.url != url and "/images/" not in page.url


def test_focus_mode_shows_one_large_image_and_decides_with_every_key(contexts: Contexts, demo: Demo) -> None:
    page = contexts.page(Accounts.reviewer)
    group = GROUP_OF["focus_mode"]
    cards = open_queue(page, group)
    first, second = label_ids(cards)[:2]
    page.keyboard.press("f")
    focus = page.get_by_test_id("focus")
    expect(focus).to_be_visible()
    image = page.get_by_test_id("focus-image")
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    box = image.bounding_box()
    assert box["height"] >= 0.7 * page.viewport_size["height"]
    label = api(page, f"/api/labels/{first}")
    expect(page.get_by_test_id("focus-value")).to_have_text(label["value"])
    expect(page.get_by_test_id("focus-confidence")).to_have_text(f"{label['confidence']:.2f}")
    expect(page.get_by_test_id("focus-alternatives").locator("li")).to_have_count(2)
    expect(page.get_by_test_id("focus-options").locator("li")).to_have_count(len(label["options"]))
    page.keyboard.press("+")
    assert "scale(1.25)" in image.get_attribute("style")
    page.keyboard.press("0")
    assert "scale(1)" in image.get_attribute("style")
    # The last option's key corrects to it, and focus mode moves on to the next image.
    last_key = page.get_by_test_id("focus-options").locator("kbd").last.inner_text()
    page.keyboard.press(last_key)
    expect(page.get_by_test_id("focus-name")).to_have_text(api(page, f"/api/labels/{second}")["image_id"] and
                                                        re.compile(r"\S"))
    expect(page.locator(f'[data-testid="card"][data-label-id="{first}"] [data-testid="status"]')).to_have_text(
        "corrected")
    assert demo.query("SELECT value FROM labels WHERE id = ?", first)[0][0] == label["options"][-1]
    expect(page.locator(f'[data-testid="card"][data-label-id="{second}"]')).to_have_class(re.compile(r"\bfocused\b"))
    page.keyboard.press("Escape")
    expect(focus).to_be_hidden()
    # The detail page has the same controls and keys.
    page.goto(f"/images/{label['image_id']}")
    detail_cards = page.get_by_test_id("card")
    expect(detail_cards.first).to_be_visible()
    assert detail_cards.count() == len(api(page, f"/api/images/{label['image_id']}")["labels"])
    page.locator("body").focus()
    page.keyboard.press("f")
    expect(page.get_by_test_id("focus")).to_be_visible()


def test_the_next_batch_loads_in_place_with_nothing_skipped_or_repeated(contexts: Contexts, demo: Demo) -> None:
    page = contexts.page(Accounts.reviewer)
    group = GROUP_OF["focus_mode"]
    cards = open_queue(page, group)
    first_page = label_ids(cards)
    assert len(first_page) == 48
    for _ in range(len(first_page) - 1):
        page.keyboard.press("j")
    page.keyboard.press("a")  # the last card: the next batch is already in, and the cursor moves on to it
    expect(cards.nth(len(first_page))).to_have_class(re.compile(r"\bfocused\b"))
    shown = label_ids(cards)
    proposed = [label["id"] for label in
                api(page, f"/api/labels?group={group}&status=proposed&sort=id&limit=500")["labels"]]
    after = [i for i in proposed if i > first_page[-1]]
    assert shown[len(first_page):] == after[:len(shown) - len(first_page)]  # right after, none skipped
    assert len(set(shown)) == len(shown)  # none twice
    assert "after=" not in page.url  # loaded in place: no page load, so no key is lost to one


def test_review_pages_have_no_serious_accessibility_violations(contexts: Contexts) -> None:
    from axe_playwright_python.sync_playwright import Axe

    page = contexts.page(Accounts.reviewer)
    open_queue(page, GROUP_OF["focus_mode"])
    axe = Axe()
    page.keyboard.press("c")  # with the correction picker open
    expect(page.get_by_test_id("correct-form")).to_be_visible()
    states = {"queue with the picker": axe.run(page)}
    page.keyboard.press("Escape")
    page.keyboard.press("f")
    expect(page.get_by_test_id("focus")).to_be_visible()
    states["focus mode"] = axe.run(page)
    page.keyboard.press("Escape")
    page.get_by_test_id("card").first.get_by_test_id("detail-link").click()
    expect(page.get_by_test_id("full-image")).to_be_visible()
    states["detail"] = axe.run(page)
    serious = {name: [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
                      for v in result.response["violations"] if v["impact"] in ("serious", "critical")]
               for name, result in states.items()}
    assert serious == {name: [] for name in states}, serious
