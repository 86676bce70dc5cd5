"""Two reviewers in two browsers decide on the same label: the later, stale decision is refused."""

from __future__ import annotations

import pytest

from tests.browser.conftest import GROUP_OF, Accounts, Contexts, Demo, api, expect, queue_url

pytestmark = pytest.mark.browser


def test_stale_decision_is_refused_and_the_first_one_kept(contexts: Contexts, demo: Demo) -> None:
    group = GROUP_OF["conflict"]
    alice = contexts.page(Accounts.reviewer)
    bob = contexts.page(Accounts.second)
    # Both open the same queue of every status (a proposed queue leases its cards to one reviewer:
    # tests/web/test_team_leases.py) and see the same first label, at the same version.
    alice.goto(queue_url(group, status=""))
    bob.goto(queue_url(group, status=""))
    a_card = alice.get_by_test_id("card").first
    label_id = a_card.get_attribute("data-label-id")
    b_card = bob.locator(f'[data-testid="card"][data-label-id="{label_id}"]')
    expect(b_card).to_be_visible()
    seen_version = b_card.get_attribute("data-version")
    assert a_card.get_attribute("data-version") == seen_version

    # Alice corrects it to an option of her choice.
    a_card.get_by_test_id("correct").click()
    options = a_card.get_by_test_id("correct-select").locator("option").evaluate_all(
        "(opts) => opts.map((o) => o.value)")
    alices_value = options[-1]
    a_card.get_by_test_id("correct-select").select_option(alices_value)
    a_card.get_by_test_id("correct-submit").click()
    expect(a_card.get_by_test_id("status")).to_have_text("corrected")

    # Bob, still on the old view, accepts: refused with a message that says why.
    expect(b_card.get_by_test_id("status")).to_have_text("proposed")
    b_card.get_by_test_id("accept").click()
    banner = bob.get_by_test_id("error-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text(f"label {label_id} was changed by someone else")
    expect(banner).to_contain_text(f"you saw version {seen_version}")
    # His card then shows what Alice decided, so he can decide again on the current state.
    expect(b_card.get_by_test_id("status")).to_have_text("corrected")
    expect(b_card.get_by_test_id("value")).to_have_text(alices_value)

    # The catalog holds Alice's decision, and only hers.
    label = api(bob, f"/api/labels/{label_id}")
    assert (label["status"], label["value"]) == ("corrected", alices_value)
    status, value, reviewed_by = demo.query(
        "SELECT status, value, reviewed_by FROM labels WHERE id = ?", int(label_id))[0]
    assert (status, value, reviewed_by) == ("corrected", alices_value, demo.user_id(Accounts.reviewer))
    actions = demo.query("SELECT action, user_id FROM review_events WHERE label_id = ? ORDER BY id", int(label_id))
    assert actions == [("correct", demo.user_id(Accounts.reviewer))]

    # Bob's second try, on the refreshed card, goes through.
    b_card.get_by_test_id("accept").click()
    expect(b_card.get_by_test_id("status")).to_have_text("accepted")
    expect(banner).to_be_hidden()
    assert demo.query("SELECT status, value, reviewed_by FROM labels WHERE id = ?", int(label_id))[0] == \
        ("accepted", alices_value, demo.user_id(Accounts.second))
