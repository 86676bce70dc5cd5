"""A closed tab gives its cards back: on a queue small enough for one reviewer's claim, the second
reviewer's queue is empty until the first one's tab closes, then it has the cards at once (not in
five minutes, when the leases would lapse); paging on keeps what the new page claimed."""

from __future__ import annotations

import time

import pytest

from tests.browser.conftest import GROUP_OF, Accounts, Contexts, Demo, expect, queue_url

pytestmark = pytest.mark.browser


def _held(demo: Demo, name: str, ids: list[int]) -> set[int]:
    marks = ",".join("?" * len(ids))
    return {row[0] for row in demo.query(
        f"SELECT label_id FROM review_leases WHERE user_id = ? AND label_id IN ({marks}) "
        "AND expires_at > datetime('now')", demo.user_id(name), *ids)}


def _until(check, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def test_closing_the_tab_releases_its_claim_for_the_next_reviewer(contexts: Contexts, demo: Demo) -> None:
    group = GROUP_OF["detail"]  # its queue is not worked by another browser test
    counts = demo.query("SELECT value, count(*) FROM labels WHERE \"group\" = ? AND status = 'proposed' "
                        "AND value IS NOT NULL GROUP BY value HAVING count(*) BETWEEN 3 AND 40 ORDER BY 2", group)
    assert counts, "no small value queue to work on"
    value = counts[0][0]
    url = queue_url(group, value=value)
    rita = contexts.page(Accounts.reviewer)
    rita.goto(url)
    expect(rita.get_by_test_id("card").first).to_be_visible()
    ids = [int(x) for x in rita.get_by_test_id("card").evaluate_all("(cs) => cs.map((c) => c.dataset.labelId)")]
    assert len(ids) == counts[0][1] and _held(demo, Accounts.reviewer, ids) == set(ids)

    rob = contexts.page(Accounts.second)
    rob.goto(url)
    expect(rob.get_by_test_id("queue-total")).to_contain_text("0 labels match")

    # a reload is a new page that claims the cards again before the old one's beacon lands: still hers
    rita.reload()
    expect(rita.get_by_test_id("card").first).to_be_visible()
    time.sleep(1)
    assert _held(demo, Accounts.reviewer, ids) == set(ids)

    rita.close()  # pagehide: the beacon
    assert _until(lambda: not _held(demo, Accounts.reviewer, ids)), "the closed tab's leases are still held"
    rob.reload()
    expect(rob.get_by_test_id("card")).to_have_count(len(ids))
    rob.close()  # and his, so the other browser tests find the group as they left it
    assert _until(lambda: not _held(demo, Accounts.second, ids))
