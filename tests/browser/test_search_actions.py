"""Search results you can act on: each hit holds its label's review card (the queue's card code),
with accept and correct by click or key, and focus mode."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import GROUP_OF, Accounts, Contexts, Demo, expect

pytestmark = pytest.mark.browser


def test_accept_correct_and_focus_mode_on_search_results(contexts: Contexts, demo: Demo) -> None:
    group = GROUP_OF["search"]
    page = contexts.page(Accounts.reviewer)
    page.goto(f"/search?q=a+tool+on+a+workbench&k=12&group={group}")
    hits = page.get_by_test_id("hit")
    expect(hits).to_have_count(12)
    expect(page.get_by_test_id("search-acting")).to_contain_text(group)
    # Every hit holds the card of its image's label in that group.
    for i in range(12):
        card = hits.nth(i).get_by_test_id("card")
        label_id = int(card.get_attribute("data-label-id"))
        image_id = int(hits.nth(i).get_attribute("data-image-id"))
        assert demo.query('SELECT image_id, "group" FROM labels WHERE id = ?', label_id)[0] == (image_id, group)

    def fresh(i: int) -> tuple[int, str]:
        card = hits.nth(i).get_by_test_id("card")
        label_id = int(card.get_attribute("data-label-id"))
        return label_id, demo.query("SELECT status FROM labels WHERE id = ?", label_id)[0][0]

    # Other modules' tests decide labels of this group in the same demo home (the lab's suggestion
    # test reviews a few by id): act on three hits in a row that nobody has decided yet.
    statuses = [fresh(i)[1] for i in range(12)]
    at = next((i for i in range(10) if statuses[i:i + 3] == ["proposed"] * 3), None)
    assert at is not None, f"no three undecided hits in a row: {statuses}"

    first = hits.nth(at).get_by_test_id("card")
    label_id, _ = fresh(at)
    first.get_by_test_id("accept").click()
    expect(first.get_by_test_id("status")).to_have_text("accepted")
    assert demo.query("SELECT status, reviewed_by FROM labels WHERE id = ?", label_id)[0] == (
        "accepted", demo.user_id(Accounts.reviewer))

    # A key on the focused card: correct to its first alternative by that option's key.
    second = hits.nth(at + 1).get_by_test_id("card")
    expect(second).to_be_focused()  # the decision moved the focus on, as in the queue
    alternative = second.get_by_test_id("alternatives").locator("button.alt").first
    option = alternative.get_attribute("data-option")
    key = alternative.locator("kbd").inner_text()
    label_id, _ = fresh(at + 1)
    page.keyboard.press(key)
    expect(second.get_by_test_id("value")).to_have_text(option)
    assert demo.query("SELECT status, value FROM labels WHERE id = ?", label_id)[0] == ("corrected", option)

    # Focus mode on the next hit: its image, large; Esc comes back to its card.
    third = hits.nth(at + 2).get_by_test_id("card")
    expect(third).to_be_focused()
    page.keyboard.press("f")
    dialog = page.get_by_test_id("focus")
    expect(dialog).to_be_visible()
    image_id = re.search(r"/images/(\d+)", third.get_by_test_id("detail-link").get_attribute("href")).group(1)
    expect(page.get_by_test_id("focus-image")).to_have_attribute("src", re.compile(rf"/images/{image_id}/"))
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(third).to_be_focused()
