"""A team on one collection, in real browsers: two fast reviewers on the same queue while an admin
relabels twice (learn from reviews, then a changed prompt set). No decision may land on the wrong
image: every stored decision equals the truth of its own image, the two reviewers' decided sets are
disjoint (leases), and every key press either made its decision or left a visible message on its own card.

Its own demo collection and server (the relabels change proposals, which the session's demo keeps
stable for the other browser tests).
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import Page

from labeler.core.prompts import home_prompt_set_dir
from tests.browser.conftest import (TIMEOUT_MS, VIEWPORT, Accounts, Demo, build_demo, expect, login, queue_url,
                                    serving)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

GROUP = "concept"
IMAGES = 450  # 120 decisions each, plus the batch each queue claims ahead
KEYS_EACH = 120
FIRST_RELABEL, SECOND_RELABEL = 40, 80  # after this many keys of each reviewer
NEXT_KEY_S = 0.12  # the fast annotator's second key, after the first


@pytest.fixture(scope="module")
def team(tmp_path_factory, model_spec: str, browser) -> Iterator[Demo]:
    home = tmp_path_factory.mktemp("team") / "home"
    build_demo(home, model_spec, IMAGES, 11)
    with serving(home, model_spec) as url:
        yield Demo(home=home, model=model_spec, url=url)


def _truth(demo: Demo) -> dict[int, str]:
    """Each label of GROUP (by id) → its image's true value."""
    rows = {row["file"]: row[GROUP] for row in csv.DictReader((demo.world / "truth.csv").open())}
    return {label_id: rows[Path(path).name] for label_id, path in demo.query(
        'SELECT l.id, f.path FROM labels l JOIN image_files f ON f.image_id = l.image_id WHERE l."group" = ?',
        GROUP)}


class Annotator:
    """A fast annotator: reads the focused card and the one after it, presses the key for the first's
    true value, and NEXT_KEY_S later the key for the second's."""

    def __init__(self, page: Page, truth: dict[int, str]):
        self.page = page
        self.truth = truth
        self.keys = page.evaluate("() => JSON.parse(document.getElementById('review-data').textContent).keys")[GROUP]
        self.pressed: list[tuple[int, str]] = []  # (label id, the value meant)

    def _key(self, label_id: int, shown: str) -> str:
        meant = self.truth[label_id]
        assert meant in self.keys, f"truth {meant!r} has no key"
        self.pressed.append((label_id, meant))
        return "a" if shown == meant else self.keys[meant]

    def read(self) -> list[tuple[int, str]]:
        """(label id, value shown) of the focused card and the one after it."""
        self.page.wait_for_selector('[data-testid="card"].focused')
        return self.page.evaluate("""() => {
            const cards = Array.from(document.querySelectorAll('[data-testid="card"]'));
            const i = cards.findIndex((c) => c.classList.contains('focused'));
            return cards.slice(i, i + 2).map((c) => [Number(c.dataset.labelId),
                                                     c.querySelector('[data-testid="value"]').textContent]);
        }""")

    def two_keys(self) -> int:
        seen = self.read()
        for n, (label_id, shown) in enumerate(seen):
            if n:
                time.sleep(NEXT_KEY_S)
            self.page.keyboard.press(self._key(label_id, shown))
        return len(seen)


def _post(page: Page, path: str, **kwargs):
    csrf = page.evaluate("() => document.querySelector('meta[name=\"csrf-token\"]').content")
    return page.request.post(path, headers={"X-CSRF-Token": csrf}, **kwargs)


def _relabel_with_a_changed_prompt_set(admin: Page, demo: Demo) -> None:
    """The admin saves an edited workshop prompt set (as the lab does) and runs labeling with it."""
    from labeler.core.prompts import load_prompt_set

    source = load_prompt_set("workshop").source
    saved = home_prompt_set_dir(demo.home) / "workshop.yaml"
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(source.replace('"a tool for driving nails"', '"a red metal object on a white table"'))
    admin.goto("/lab?set=workshop")
    admin.get_by_test_id("lab-run").click()
    expect(admin.get_by_test_id("job")).to_be_visible()


@pytest.fixture
def person(browser, team: Demo) -> Iterator:
    """``person(name)``: a logged-in page in a context of its own (its own cookies)."""
    opened = []

    def make(name: str) -> Page:
        context = browser.new_context(base_url=team.url, viewport=VIEWPORT)
        context.set_default_timeout(TIMEOUT_MS)
        opened.append(context)
        page = context.new_page()
        login(page, name)
        return page

    yield make
    for context in opened:
        context.close()


def test_two_fast_reviewers_and_two_relabels_never_store_a_decision_on_the_wrong_image(person, team: Demo) -> None:
    truth = _truth(team)
    pages = []
    for name in (Accounts.reviewer, Accounts.second):
        page = person(name)
        page.goto(queue_url(GROUP, sort="uncertainty"))
        expect(page.get_by_test_id("card").first).to_be_visible()
        pages.append(page)
    admin = person(Accounts.admin)
    people = [Annotator(page, truth) for page in pages]

    counts = [0, 0]
    relabels = 0
    while min(counts) < KEYS_EACH:
        for who, person in enumerate(people):
            if counts[who] < KEYS_EACH:
                counts[who] += person.two_keys()
        if relabels == 0 and min(counts) >= FIRST_RELABEL:
            answer = _post(admin, "/api/jobs", data={"kind": "learn-and-relabel"})
            assert answer.status in (200, 202), answer.text()
            relabels = 1
        elif relabels == 1 and min(counts) >= SECOND_RELABEL:
            _relabel_with_a_changed_prompt_set(admin, team)
            relabels = 2
    assert relabels == 2
    # Let every request finish and every job end.
    for page in pages:
        page.wait_for_function("() => !document.querySelector('[data-testid=\"card\"].pending')")
    deadline = time.monotonic() + 120
    while team.query("SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')")[0][0]:
        assert time.monotonic() < deadline, "a relabel job did not finish"
        time.sleep(0.5)
    kinds = [row[0] for row in team.query("SELECT kind FROM jobs WHERE status = 'done' ORDER BY id")]
    assert kinds == ["learn-and-relabel", "label"]

    # 0 decisions on a wrong image: every stored human decision is its own image's truth.
    reviewers = {team.user_id(Accounts.reviewer): 0, team.user_id(Accounts.second): 1}
    events = team.query("SELECT label_id, user_id, action, after_value FROM review_events WHERE action IN "
                        "('accept', 'correct', 'reject') ORDER BY id")
    assert events, "no decision was stored"
    wrong = [(label_id, value, truth[label_id]) for label_id, _, _, value in events if value != truth[label_id]]
    assert not wrong, f"decisions on the wrong image (label, stored, truth): {wrong[:10]}"
    for label_id, value, reviewed_by in team.query(
            'SELECT id, value, reviewed_by FROM labels WHERE "group" = ? AND status <> \'proposed\'', GROUP):
        assert reviewed_by in reviewers and value == truth[label_id]

    # Leases split the work: no label was decided by both.
    by_reviewer = [{label_id for label_id, user_id, _, _ in events if reviewers[user_id] == who} for who in (0, 1)]
    assert by_reviewer[0] and by_reviewer[1] and not by_reviewer[0] & by_reviewer[1]

    # No key press lost without a message on its own card.
    decided = {(label_id, user_id) for label_id, user_id, _, _ in events}
    for who, (person, page) in enumerate(zip(people, pages)):
        user_id = next(u for u, w in reviewers.items() if w == who)
        messages = set(page.evaluate("""() => Array.from(document.querySelectorAll('[data-testid="card"]'))
            .filter((c) => !c.querySelector('[data-testid="card-error"]').hidden)
            .map((c) => Number(c.dataset.labelId))"""))
        lost = [label_id for label_id, _ in person.pressed if (label_id, user_id) not in decided
                and label_id not in messages]
        assert not lost, f"key presses of reviewer {who} with neither a decision nor a message: {lost[:10]}"


def test_flags_by_key_and_by_click_show_on_cards_the_detail_page_and_the_queue_filter(person, team: Demo) -> None:
    page = person(Accounts.reviewer)
    page.goto(queue_url("color", sort="id"))
    cards = page.get_by_test_id("card")
    expect(cards.first).to_be_visible()
    first, second = (int(i) for i in cards.evaluate_all("(cs) => cs.slice(0, 2).map((c) => c.dataset.labelId)"))
    page.keyboard.press("!")  # the label: ambiguous
    expect(cards.first.get_by_test_id("card-flags")).to_have_text("⚑ ambiguous")
    page.keyboard.press("j")
    page.keyboard.press("Shift+B")  # the image: bad image
    expect(cards.nth(1).get_by_test_id("card-flags")).to_have_text("⚑ bad image")
    assert team.query("SELECT name, label_id FROM flags ORDER BY id") == [("ambiguous", first), ("bad image", None)]
    # by click, on the detail page: a flag of the team's own, with a note
    image_id = team.query("SELECT image_id FROM labels WHERE id = ?", second)[0][0]
    page.goto(f"/images/{image_id}")
    expect(page.get_by_test_id("flag-name")).to_have_text(["bad image"])
    page.get_by_test_id("flag-name-input").fill("reshoot")
    page.get_by_test_id("flag-note-input").fill("out of focus")
    page.get_by_test_id("flag-submit").click()
    expect(page.get_by_test_id("flag-name")).to_have_text(["bad image", "reshoot"])
    expect(page.get_by_test_id("flag-note")).to_have_text("out of focus")
    # the queue's filter
    page.goto(queue_url("concept", status="", sort="id") + "&flag=reshoot")
    expect(cards).to_have_count(1)
    assert team.query("SELECT image_id FROM labels WHERE id = ?",
                      int(cards.first.get_attribute("data-label-id")))[0][0] == image_id
