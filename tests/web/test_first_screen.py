"""The dashboard as a first screen: the next thing to do and one primary button to it, the
collection's main group first (its prompt set's first group, not the alphabet's), and actions
that need reviews disabled, with the reason, until there are some. Real app, real collection."""

from __future__ import annotations

import re

from labeler.core.prompts import load_prompt_set
from labeler.review import decisions as review
from labeler.store.catalog import Label
from sqlalchemy import func, select
from tests.web.conftest import Users, login

MAIN = next(iter(load_prompt_set("workshop").groups))  # the demo collection is labeled with workshop


def test_the_dashboard_leads_to_the_main_group(client, app):
    login(client, Users.reviewer)
    html = client.get("/").get_data(as_text=True)
    with app.extensions["labeler"].session() as s:
        left = s.scalar(select(func.count()).select_from(Label).where(Label.group == MAIN,
                                                                     Label.status == "proposed"))
        alphabetical = review.groups(s)[0]
    assert alphabetical != MAIN  # the test means something: the alphabet would pick another group
    start = re.search(r'<a class="button primary" href="([^"]+)" data-testid="start-review">', html)
    assert start and start.group(1) == f"/review?group={MAIN}"
    assert html.count('data-testid="start-review"') == 1
    assert f"Review {MAIN}: {left:,} to go" in html
    # The groups follow the prompt set, main group first.
    rows = re.findall(r'data-testid="group-([a-z]+)"', html)
    assert rows[0] == MAIN and rows == [g for g in load_prompt_set("workshop").groups if g in rows]
    # The Review link, with no group asked for, opens the main group's queue.
    queue = client.get("/review").get_data(as_text=True)
    assert f"<option selected>{MAIN}</option>" in queue and f"<h1>Review {MAIN}</h1>" in queue


def test_actions_that_need_reviews_are_disabled_with_the_reason(client, app):
    login(client, Users.admin)
    html = client.get("/").get_data(as_text=True)
    learn = re.search(r'<button type="submit" data-testid="learn-start"[^>]*>', html).group(0)
    assert "disabled" in learn and 'aria-describedby="learn-hint"' in learn
    assert 'data-testid="learn-blocked"' in html and "Needs reviews first" in html
    accept = re.search(rf'<button type="submit" data-testid="accept-start-{MAIN}"[^>]*>', html, re.S).group(0)
    assert "disabled" in accept and f"accept-why-{MAIN}" in accept

    with app.extensions["labeler"].session() as s:
        label = s.scalars(select(Label).where(Label.group == MAIN).order_by(Label.id)).first()
        review.decide(s, label.id, "accept", None, label.version)
    html = client.get("/").get_data(as_text=True)
    learn = re.search(r'<button type="submit" data-testid="learn-start"[^>]*>', html).group(0)
    assert "disabled" not in learn and 'data-testid="learn-blocked"' not in html
    accept = re.search(rf'<button type="submit" data-testid="accept-start-{MAIN}"[^>]*>', html, re.S).group(0)
    assert "disabled" not in accept
