"""The review queue in a real browser: keyboard decisions, corrections and bulk accepts.

Every decision is checked three ways: on the page, on the page after a reload, and in the
catalog (the JSON API and the SQLite file itself).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Locator, Page

from tests.browser.conftest import GROUP_OF, Accounts, Contexts, Demo, api, expect, queue_url

pytestmark = pytest.mark.browser


def open_queue(page: Page, group: str) -> Locator:
    """Open the proposed labels of ``group`` in catalog order; returns the cards."""
    page.goto(queue_url(group))
    expect(page.get_by_test_id("queue-grid")).to_be_visible()
    cards = page.get_by_test_id("card")
    expect(cards.first).to_be_visible()
    return cards


def card_by_label(page: Page, label_id: int | str) -> Locator:
    return page.locator(f'[data-testid="card"][data-label-id="{label_id}"]')


def catalog_label(demo: Demo, label_id: int) -> tuple:
    """(status, value, reviewed_by, version) as the SQLite file holds them."""
    return demo.query("SELECT status, value, reviewed_by, version FROM labels WHERE id = ?", label_id)[0]


def test_queue_lists_proposed_labels_with_shortcut_help(contexts: Contexts) -> None:
    page = contexts.page(Accounts.reviewer)
    page.get_by_test_id("nav-review").click()
    expect(page.get_by_test_id("queue-grid")).to_be_visible()
    expect(page.get_by_test_id("queue-total")).to_contain_text("match")
    expect(page.get_by_test_id("shortcuts")).to_contain_text("accept the proposed value")
    cards = page.get_by_test_id("card")
    expect(cards.first).to_be_visible()
    first = cards.first
    assert first.get_attribute("data-label-id")
    expect(first.get_by_test_id("status")).to_have_text("proposed")
    # The thumbnail is served and decodes in the browser.
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=first.locator("img").element_handle())


def test_accept_with_keyboard_persists(contexts: Contexts, demo: Demo) -> None:
    page = contexts.page(Accounts.reviewer)
    group = GROUP_OF["keyboard"]
    cards = open_queue(page, group)
    first, second = cards.nth(0), cards.nth(1)
    label_id = int(first.get_attribute("data-label-id"))
    proposed_value = first.get_by_test_id("value").inner_text()
    expect(first).to_have_class(re.compile(r"\bfocused\b"))  # the queue starts on the first card

    page.keyboard.press("a")

    expect(first.get_by_test_id("status")).to_have_text("accepted")
    expect(second).to_have_class(re.compile(r"\bfocused\b"))  # and moves on to the next
    # After a reload the label is no longer proposed; with any status it shows as accepted.
    page.reload()
    expect(card_by_label(page, label_id)).to_have_count(0)
    page.goto(queue_url(group, status=""))
    expect(card_by_label(page, label_id).get_by_test_id("status")).to_have_text("accepted")

    label = api(page, f"/api/labels/{label_id}")
    assert (label["status"], label["value"]) == ("accepted", proposed_value)
    status, value, reviewed_by, _ = catalog_label(demo, label_id)
    assert (status, value, reviewed_by) == ("accepted", proposed_value, demo.user_id(Accounts.reviewer))


def test_undo_with_keyboard_restores_the_proposal(contexts: Contexts, demo: Demo) -> None:
    page = contexts.page(Accounts.reviewer)
    cards = open_queue(page, GROUP_OF["keyboard"])
    first = cards.nth(0)
    label_id = int(first.get_attribute("data-label-id"))
    page.keyboard.press("r")
    expect(first.get_by_test_id("status")).to_have_text("rejected")
    expect(first.get_by_test_id("value")).to_have_text("(none of these)")
    page.keyboard.press("u")
    expect(first.get_by_test_id("status")).to_have_text("proposed")
    assert catalog_label(demo, label_id)[:3] == ("proposed", api(page, f"/api/labels/{label_id}")["predicted"], None)


def test_correct_by_picking_an_option_typing_one_or_pressing_a_number(contexts: Contexts, demo: Demo) -> None:
    page = contexts.page(Accounts.reviewer)
    cards = open_queue(page, GROUP_OF["correct"])
    picked, typed, numbered = cards.nth(0), cards.nth(1), cards.nth(2)
    ids = [int(c.get_attribute("data-label-id")) for c in (picked, typed, numbered)]

    # 1. "c" opens the form; pick an option other than the proposed one.
    form = picked.get_by_test_id("correct-form")
    expect(form).to_be_hidden()
    page.keyboard.press("c")
    expect(form).to_be_visible()
    proposed = picked.get_by_test_id("value").inner_text()
    options = [o for o in form.get_by_test_id("correct-select").locator("option").evaluate_all(
        "(opts) => opts.map((o) => o.value)")]
    other = next(o for o in options if o != proposed)
    form.get_by_test_id("correct-select").select_option(other)
    form.get_by_test_id("correct-submit").click()
    expect(picked.get_by_test_id("status")).to_have_text("corrected")
    expect(picked.get_by_test_id("value")).to_have_text(other)
    expect(form).to_be_hidden()

    # 2. The next card is focused: type a value no option has, and submit with Enter.
    expect(typed).to_have_class(re.compile(r"\bfocused\b"))
    page.keyboard.press("c")
    typed.get_by_test_id("correct-input").fill("brass")
    typed.get_by_test_id("correct-input").press("Enter")
    expect(typed.get_by_test_id("value")).to_have_text("brass")
    expect(typed.get_by_test_id("status")).to_have_text("corrected")

    # 3. A number key corrects to that option at once.
    expect(numbered).to_have_class(re.compile(r"\bfocused\b"))
    page.keyboard.press("2")
    expect(numbered.get_by_test_id("value")).to_have_text(options[1])
    expect(numbered.get_by_test_id("status")).to_have_text("corrected")

    page.goto(queue_url(GROUP_OF["correct"], status="corrected"))
    for label_id, value in zip(ids, (other, "brass", options[1])):
        expect(card_by_label(page, label_id).get_by_test_id("value")).to_have_text(value)
        assert catalog_label(demo, label_id)[:3] == ("corrected", value, demo.user_id(Accounts.reviewer))
    history = api(page, f"/api/images/{api(page, f'/api/labels/{ids[1]}')['image_id']}")["history"]
    assert [(e["action"], e["after_value"], e["user"]) for e in history if e["label_id"] == ids[1]] == \
        [("correct", "brass", Accounts.reviewer)]


def test_bulk_accept_selected(contexts: Contexts, demo: Demo) -> None:
    page = contexts.page(Accounts.reviewer)
    cards = open_queue(page, GROUP_OF["bulk_selected"])
    chosen = [cards.nth(i) for i in (0, 2, 3)]
    ids = [int(c.get_attribute("data-label-id")) for c in chosen]
    untouched = int(cards.nth(1).get_attribute("data-label-id"))
    chosen[0].get_by_test_id("select").check()
    chosen[1].get_by_test_id("select").check()
    chosen[2].get_by_test_id("value").click()  # a click on a card makes it the current one for "x"
    page.keyboard.press("x")
    expect(page.get_by_test_id("selected-count")).to_have_text("3")

    page.get_by_test_id("accept-selected").click()

    for card in chosen:
        expect(card.get_by_test_id("status")).to_have_text("accepted")
    expect(page.get_by_test_id("flash")).to_have_text("Accepted 3.")
    expect(page.get_by_test_id("selected-count")).to_have_text("0")
    reviewer = demo.user_id(Accounts.reviewer)
    assert [catalog_label(demo, i)[0::2] for i in ids] == [("accepted", reviewer)] * 3
    assert catalog_label(demo, untouched)[0] == "proposed"


def test_bulk_accept_above_threshold_previews_the_count(contexts: Contexts, demo: Demo) -> None:
    page = contexts.page(Accounts.reviewer)
    group = GROUP_OF["bulk_threshold"]
    open_queue(page, group)
    proposed = api(page, f"/api/labels?group={group}&status=proposed&sort=confidence&limit=500")["labels"]
    # Exactly the third highest confidence: takes the top three (plus exact ties), even when a
    # good model saturates many confidences near 1. JSON floats round-trip exactly.
    threshold = proposed[2]["confidence"]
    expected = sorted(label["id"] for label in proposed if label["confidence"] >= threshold)
    assert 3 <= len(expected) < len(proposed), "the threshold must split the queue for this test to mean anything"

    page.get_by_test_id("threshold").fill(str(threshold))
    expect(page.get_by_test_id("threshold-accept")).to_be_disabled()  # no accepting before a preview
    page.get_by_test_id("threshold-preview").click()
    expect(page.get_by_test_id("threshold-count")).to_have_text(
        f"{len(expected)} proposed labels would be accepted.")
    page.get_by_test_id("threshold-accept").click()

    # The page reloads with the accepted ones gone from the proposed queue.
    expect(page.get_by_test_id("queue-total")).to_contain_text(f"{len(proposed) - len(expected)} labels match")
    statuses = {label["id"]: demo.query("SELECT status FROM labels WHERE id = ?", label["id"])[0][0]
                for label in proposed}
    assert sorted(i for i, status in statuses.items() if status == "accepted") == expected
    assert all(status == "proposed" for i, status in statuses.items() if i not in expected)


def test_detail_page_shows_scores_and_the_decision_history(contexts: Contexts) -> None:
    page = contexts.page(Accounts.reviewer)
    group = GROUP_OF["detail"]
    card = open_queue(page, group).first
    label_id = card.get_attribute("data-label-id")
    page.keyboard.press("a")
    expect(card.get_by_test_id("status")).to_have_text("accepted")
    card.get_by_test_id("detail-link").click()

    expect(page.get_by_test_id("full-image")).to_be_visible()
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0",
                           arg=page.get_by_test_id("full-image").element_handle())
    label = page.locator(f'[data-testid="label-{group}"][data-label-id="{label_id}"]')
    expect(label.get_by_test_id("label-status")).to_have_text("accepted")
    options = api(page, f"/api/labels/{label_id}")["options"]
    assert len(options) >= 2
    # A header row, then one row per option with its score.
    expect(page.get_by_test_id(f"scores-{group}").locator("tr")).to_have_count(1 + len(options))
    row = page.get_by_test_id("history-row").filter(has_text=group)
    expect(row).to_have_count(1)
    expect(row).to_contain_text(Accounts.reviewer)
    expect(row).to_contain_text("accept")
