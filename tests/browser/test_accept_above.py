"""Accept all above a threshold by keyboard: from any card, one key (Shift+T) opens a preview of
exactly the labels that will be accepted (20 of them at random first), and one key (Enter) accepts
those and no others, as one event: its note survives a reload and one key (u) undoes all of it."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import GROUP_OF, Accounts, Contexts, Demo, api, expect, queue_url

pytestmark = pytest.mark.browser


def test_shift_t_previews_exactly_what_enter_accepts(contexts: Contexts, demo: Demo) -> None:
    page = contexts.page(Accounts.second)
    group = GROUP_OF["bulk_threshold"]
    proposed = api(page, f"/api/labels?group={group}&status=proposed&sort=confidence&limit=500")["labels"]
    threshold = proposed[len(proposed) // 4]["confidence"]  # about a quarter of the queue or more
    # The queue of every status: a proposed queue would claim its cards, which test_review's module uses.
    page.goto(queue_url(group, status=""))
    cards = page.get_by_test_id("card")
    expect(cards.first).to_have_class(re.compile(r"\bfocused\b"))
    page.get_by_test_id("threshold").fill(str(threshold))
    cards.nth(min(20, cards.count() - 1)).focus()  # deep in the grid

    page.keyboard.press("Shift+T")  # key 1: the preview
    dialog = page.get_by_test_id("above-dialog")
    expect(dialog).to_be_visible()
    confirm = page.get_by_test_id("above-confirm")
    expect(confirm).to_be_focused()
    expected = sorted(i for (i,) in demo.query(
        "SELECT l.id FROM labels l JOIN images i ON i.id = l.image_id WHERE l.\"group\" = ? AND l.status = 'proposed' "
        "AND l.confidence >= ? AND l.value IS NOT NULL AND i.status = 'ok'", group, threshold))
    assert 0 < len(expected) < len(proposed), "the threshold must split the queue for this test to mean anything"
    expect(page.get_by_test_id("above-title")).to_have_text(
        re.compile(rf"^Accept {len(expected)} proposed {group} labels?$"))
    shown_ids = "(cs) => cs.map((c) => c.dataset.labelId)"
    # First, 20 at random of every label it will accept; then, on request, the first by id.
    expect(page.get_by_test_id("above-note")).to_contain_text("at random")
    sampled = [int(i) for i in page.get_by_test_id("above-card").evaluate_all(shown_ids)]
    assert set(sampled) <= set(expected) and len(sampled) == min(20, len(expected))
    page.get_by_test_id("above-all").click()
    expect(page.get_by_test_id("above-note")).to_contain_text("by id")
    shown = [int(i) for i in page.get_by_test_id("above-card").evaluate_all(shown_ids)]
    assert shown == expected[:len(shown)] and shown
    for _ in range(6):  # Tab stays inside the dialog
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.querySelector('[data-testid=above-dialog]').contains(document.activeElement)")
    confirm.focus()

    page.keyboard.press("Enter")  # the one key that accepts
    expect(dialog).to_be_hidden()
    accepted = sorted(i for (i,) in demo.query(
        "SELECT id FROM labels WHERE \"group\" = ? AND status = 'accepted' AND reviewed_by = ?",
        group, demo.user_id(Accounts.second)))
    assert set(expected) <= set(accepted)
    still = {label["id"] for label in api(page, f"/api/labels?group={group}&status=proposed&sort=id&limit=500")["labels"]}
    assert not still & set(expected)
    assert all(label["id"] in still for label in proposed if label["confidence"] < threshold)  # no others
    # The session summary: done, the pace, and at that pace, the time left.
    expect(page.get_by_test_id("progress-eta")).to_have_text(re.compile(r"^ · about (<1 min|\d+ min|[\d.]+ h) left at this pace$"))

    # One event: its note is the server's record, so a reload keeps it, and one key undoes all of it.
    message = f"Accepted {len(expected)} {group} label"
    expect(page.get_by_test_id("bulk-message")).to_contain_text(message)
    page.reload()
    expect(page.get_by_test_id("bulk-message")).to_contain_text(message)
    expect(page.get_by_test_id("bulk-undo")).to_be_visible()
    expect(cards.first).to_have_class(re.compile(r"\bfocused\b"))
    page.keyboard.press("u")
    expect(page.get_by_test_id("bulk-message")).to_contain_text(f"Undone: {len(expected)} back to proposed")
    expect(page.get_by_test_id("bulk-undo")).to_be_hidden()
    back = {i for (i,) in demo.query(f"SELECT id FROM labels WHERE status = 'proposed' AND id IN ({','.join('?' * len(expected))})",
                                      *expected)}
    assert back == set(expected)
