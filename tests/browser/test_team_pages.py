"""The team's pages in a real browser: an admin assigns a group to one reviewer from the dashboard
and takes it back; a reviewer answers another's decisions on the QA page with the queue's keys.

Its own small demo collection and server (assignments and QA shares change what the session's demo
shows the other browser tests).
"""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.browser.conftest import Accounts, Contexts, Demo, build_demo, expect, queue_url, serving

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def small_team(tmp_path_factory, model_spec: str, browser) -> Iterator[Demo]:
    home = tmp_path_factory.mktemp("team-pages") / "home"
    build_demo(home, model_spec, 40, 5)
    with serving(home, model_spec) as url:
        yield Demo(home=home, model=model_spec, url=url)


@pytest.fixture
def open_page(browser, small_team: Demo) -> Iterator:
    """``open_page(name)``: a logged-in page in a context of its own, on the small team's server."""
    made = Contexts(browser, small_team)
    yield made.page
    made.close()


def test_an_admin_assigns_a_group_from_the_dashboard_and_takes_it_back(open_page, small_team: Demo) -> None:
    admin = open_page(Accounts.admin)
    admin.goto("/")
    form = admin.get_by_test_id("assign-form")
    form.get_by_test_id("assign-group").select_option("size")
    form.get_by_test_id(f"assign-reviewer-{Accounts.second}").check()
    form.get_by_test_id("assign-submit").click()
    expect(admin.get_by_test_id("flash")).to_contain_text(f"Assigned size to {Accounts.second}")
    expect(admin.get_by_test_id("assignment")).to_contain_text(f"size: {Accounts.second}")

    rita = open_page(Accounts.reviewer)
    rita.goto(queue_url("size"))
    expect(rita.get_by_test_id("queue-total")).to_contain_text("0 labels match")
    rob = open_page(Accounts.second)
    rob.goto(queue_url("size"))
    expect(rob.get_by_test_id("card").first).to_be_visible()
    rob.close()  # his tab gives its claim back

    admin.get_by_test_id("unassign").click()
    expect(admin.get_by_test_id("flash")).to_contain_text("size is no longer assigned")
    expect(admin.get_by_test_id("assignment")).to_have_count(0)
    rita.reload()
    expect(rita.get_by_test_id("card").first).to_be_visible()


def test_a_reviewer_answers_anothers_decisions_on_the_qa_page_by_key(open_page, small_team: Demo) -> None:
    admin = open_page(Accounts.admin)
    token = admin.locator('meta[name="csrf-token"]').get_attribute("content")
    answer = admin.request.post("/api/qa/share", data={"group": "color", "share": 1.0},
                                headers={"X-CSRF-Token": token})
    assert answer.ok, answer.text()

    rita = open_page(Accounts.reviewer)
    rita.goto(queue_url("color"))
    expect(rita.get_by_test_id("card").first).to_be_visible()
    for _ in range(3):
        rita.keyboard.press("a")
    rita_id = small_team.user_id(Accounts.reviewer)

    def tasks():
        return small_team.query("SELECT t.id, t.label_id, t.value, t.status FROM qa_tasks t "
                                "WHERE t.reviewer_id = ? ORDER BY t.id", rita_id)

    for _ in range(100):
        if len(tasks()) == 3:
            break
        rita.wait_for_timeout(100)
    decided = tasks()
    assert len(decided) == 3 and all(status == "open" for *_, status in decided)

    rita.goto("/qa")
    expect(rita.get_by_test_id("qa-empty")).to_be_visible()  # never her own decisions

    rob = open_page(Accounts.second)
    rob.get_by_test_id("nav-qa").click()
    cards = rob.get_by_test_id("qa-card")
    expect(cards).to_have_count(3)
    assert [int(c) for c in cards.evaluate_all("(cs) => cs.map((c) => c.dataset.labelId)")] == \
        [label_id for _, label_id, _, _ in decided]
    expect(cards.first).to_be_focused()
    keys = cards.first.evaluate("(c) => JSON.parse(c.dataset.keys)")
    rob.keyboard.press(keys[decided[0][2]])  # the same answer as rita's: agreed, and on to the next card
    expect(cards.nth(0).get_by_test_id("qa-status")).to_have_text("agreed")
    expect(cards.nth(1)).to_be_focused()
    rob.keyboard.press("r")  # none of these: a disagreement
    expect(cards.nth(1).get_by_test_id("qa-status")).to_contain_text("disagreed")
    assert [status for *_, status in tasks()] == ["agreed", "disagreed", "open"]
    rob.reload()
    expect(rob.get_by_test_id("qa-card")).to_have_count(1)  # only what is still open
