"""The history panel: a reviewer's last decisions, newest first, each with a click to undo while no
one has changed its label since; a decision someone else overruled says who, and is not undone."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import GROUP_OF, Accounts, Contexts, Demo, api, expect, queue_url

pytestmark = pytest.mark.browser


def test_history_undoes_a_decision_and_says_why_not_for_one_changed_since(contexts: Contexts, demo: Demo) -> None:
    page = contexts.page(Accounts.reviewer)
    page.goto(queue_url(GROUP_OF["history"]))
    cards = page.get_by_test_id("card")
    first, second = cards.nth(0), cards.nth(1)
    expect(first).to_have_class(re.compile(r"\bfocused\b"))
    ids = [int(first.get_attribute("data-label-id")), int(second.get_attribute("data-label-id"))]
    page.keyboard.press("a")
    page.keyboard.press("r")
    expect(second.get_by_test_id("status")).to_have_text("rejected")
    expect(first.get_by_test_id("status")).to_have_text("accepted")

    # Rob overrules rita's accept of the first.
    rob = contexts.page(Accounts.second)
    label = api(rob, f"/api/labels/{ids[0]}")
    csrf = rob.evaluate("() => document.querySelector('meta[name=\"csrf-token\"]').content")
    assert rob.request.post(f"/api/labels/{ids[0]}/review", headers={"X-CSRF-Token": csrf},
                            data={"action": "reject", "version": label["version"]}).ok

    page.keyboard.press("Shift+H")
    panel = page.get_by_test_id("history")
    expect(panel).to_be_visible()
    rows = panel.get_by_test_id("history-row")
    expect(rows.first).to_have_attribute("data-label-id", str(ids[1]))
    expect(rows.nth(1)).to_have_attribute("data-label-id", str(ids[0]))
    expect(rows.nth(1).get_by_test_id("history-why")).to_contain_text("rob changed it since")
    expect(rows.nth(1).get_by_test_id("history-undo")).to_have_count(0)
    undo = rows.first.get_by_test_id("history-undo")
    expect(undo).to_be_focused()  # the newest undoable one, by keyboard

    page.keyboard.press("Enter")  # Enter on the button does what the button does
    expect(second.get_by_test_id("status")).to_have_text("proposed")
    expect(rows.first.get_by_test_id("history-why")).to_have_text("Can't undo: undone already")
    assert demo.query("SELECT status FROM labels WHERE id = ?", ids[1])[0][0] == "proposed"
    assert demo.query("SELECT status, reviewed_by FROM labels WHERE id = ?", ids[0])[0] == (
        "rejected", demo.user_id(Accounts.second))  # rob's decision stands

    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    assert page.evaluate("() => document.activeElement.dataset.testid") == "card"
