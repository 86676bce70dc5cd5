"""The team's pages without a browser: an admin assigns work from the dashboard's form (400 naming
the field for bad input), and a reviewer's QA page lists others' decisions, blind, with the keys."""

from __future__ import annotations

import re

from sqlalchemy import select

from labeler.review import qa
from labeler.review import decisions as review
from labeler.store import db
from labeler.store.catalog import Label, User
from tests.web.conftest import Users, login, page_csrf


def _user(config, name: str) -> int:
    with db.session_scope(config) as s:
        return s.scalar(select(User.id).where(User.name == name))


def test_an_admin_assigns_and_takes_back_work_from_the_dashboard(client, other_client, web_config):
    login(client, Users.admin)
    html = client.get("/").get_data(as_text=True)
    assert 'data-testid="assign-form"' in html and f'data-testid="assign-reviewer-{Users.second}"' in html
    token = page_csrf(client, "/")
    form = {"csrf_token": token, "group": "size", "value": "", "reviewers": [Users.second]}
    unknown = client.post("/assignments", data={**form, "reviewers": ["nobody"]})
    assert unknown.status_code == 400 and "reviewers" in unknown.get_data(as_text=True)
    assert client.post("/assignments", data={**form, "group": ""}).status_code == 400
    done = client.post("/assignments", data=form)
    assert done.status_code == 302
    assert "size: rob" in re.sub(r"\s+", " ", client.get("/").get_data(as_text=True))
    login(other_client, Users.reviewer)
    assert other_client.post("/assignments", data={**form, "csrf_token": page_csrf(other_client, "/")}) \
        .status_code == 403  # reviewers do not assign
    assert other_client.get("/api/review/queue?group=size&status=proposed").get_json()["cards"] == []
    taken = client.post("/assignments", data={"csrf_token": token, "action": "unassign", "group": "size", "value": ""})
    assert taken.status_code == 302
    assert client.get("/api/review/leases").get_json()["assignments"] == []
    assert other_client.get("/api/review/queue?group=size&status=proposed").get_json()["cards"]


def test_the_qa_page_lists_others_decisions_blind_with_the_queues_keys(client, other_client, web_config):
    rita = _user(web_config, Users.reviewer)
    with db.session_scope(web_config) as s:
        qa.set_share(s, "color", 1.0)
        labels = s.scalars(select(Label).where(Label.group == "color").order_by(Label.id).limit(3)).all()
        options = review.options(s, "color")
        for label in labels:
            wrong = next(o for o in options if o != label.value)
            review.decide(s, label.id, "correct", rita, label.version, wrong)
        decided = {label.id: label.value for label in labels}
    login(client, Users.reviewer)
    assert 'data-testid="qa-empty"' in client.get("/qa").get_data(as_text=True)  # never her own
    login(other_client, Users.second)
    html = other_client.get("/qa").get_data(as_text=True)
    shown = [int(i) for i in re.findall(r'data-testid="qa-card" data-task-id="\d+" data-label-id="(\d+)"', html)]
    assert shown == sorted(decided)
    assert 'data-testid="nav-qa"' in html and html.count('data-testid="qa-option"') == 3 * len(options)
    assert "&#34;1&#34;" in html or "&quot;1&quot;" in html  # each card carries its option keys
    # blind: the first answer is nowhere on the page's cards
    cards = html[html.index('data-testid="qa-grid"'):]
    assert "corrected" not in cards and 'data-testid="value"' not in cards and "confidence" not in cards
