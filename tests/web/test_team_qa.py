"""The second pass: a random share of each reviewer's decisions goes, blind, to another reviewer;
disagreements go to an admin; the dashboard tells a careful reviewer from a careless one."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from labeler.collection import Collection
from labeler.exchange.export import export_labels
from labeler.review import decisions as review, qa
from labeler.store import db
from labeler.store.catalog import Label, QaTask, User
from tests.web.conftest import Users, login, post_json


def _user(config, name: str) -> int:
    with db.session_scope(config) as s:
        return s.scalar(select(User.id).where(User.name == name))


def _set_share(config, group: str, share: float) -> None:
    with db.session_scope(config) as s:
        qa.set_share(s, group, share)


@pytest.mark.parametrize("share", [-0.1, 1.5, "half", True, None, [0.5]])
def test_a_qa_share_outside_0_to_1_is_a_400_naming_it(client, share):
    csrf = login(client, Users.admin)
    answer = post_json(client, "/api/qa/share", {"group": "concept", "share": share}, csrf)
    assert answer.status_code == 400 and "share" in answer.get_json()["error"]


def test_only_admins_set_the_share_and_it_shows_on_the_dashboard(client, other_client):
    csrf = login(client, Users.admin)
    assert post_json(client, "/api/qa/share", {"group": "concept", "share": 0.05}, csrf).get_json()["share"] == 0.05
    rita = login(other_client, Users.reviewer)
    assert post_json(other_client, "/api/qa/share", {"group": "concept", "share": 1}, rita).status_code == 403
    label = other_client.get("/api/labels?group=concept&limit=1").get_json()["labels"][0]
    post_json(other_client, f"/api/labels/{label['id']}/review", {"action": "accept", "version": label["version"]}, rita)
    html = client.get("/").get_data(as_text=True)
    assert 'data-testid="qa-shares"' in html and "concept 5.0%" in html and 'data-testid="reviewer-rita"' in html


def test_sampling_is_random_at_the_share_and_never_hands_a_reviewer_their_own_decision(client, other_client,
                                                                                       web_config):
    rita, rob = _user(web_config, Users.reviewer), _user(web_config, Users.second)
    _set_share(web_config, "color", 0.5)
    qa.sampler.seed(1)
    with db.session_scope(web_config) as s:
        labels = list(s.scalars(select(Label).where(Label.group == "color").order_by(Label.id)))
        for label in labels:
            review.decide(s, label.id, "accept", rita, label.version)
        drawn = set(s.scalars(select(QaTask.label_id)))
    assert 0.25 * len(labels) < len(drawn) < 0.75 * len(labels)  # 60 decisions at 0.5: a share, not all or none
    qa.sampler.seed(2)
    with db.session_scope(web_config) as s:
        for label in s.scalars(select(Label).where(Label.group == "color").order_by(Label.id)):
            review.decide(s, label.id, "undo", rita, label.version)
        for label in s.scalars(select(Label).where(Label.group == "color").order_by(Label.id)):
            review.decide(s, label.id, "accept", rita, label.version)
        again = set(s.scalars(select(QaTask.label_id).where(QaTask.status == "open")))
    assert again != drawn  # another draw, other decisions

    rita_csrf = login(client, Users.reviewer)
    login(other_client, Users.second)
    assert client.get("/api/qa/queue?group=color").get_json()["tasks"] == []  # all hers: none for her
    tasks = other_client.get("/api/qa/queue?group=color").get_json()["tasks"]
    assert {t["label_id"] for t in tasks} == again and all("value" not in t and "value" not in t["card"]
                                                           for t in tasks)
    own = post_json(client, f"/api/qa/{tasks[0]['id']}", {"value": "red"}, rita_csrf)
    assert own.status_code == 400 and "own" in own.get_json()["error"]
    with db.session_scope(web_config) as s:
        assert s.scalar(select(func.count()).select_from(QaTask).where(QaTask.reviewer_id == rob)) == 0


def test_a_disagreement_goes_to_an_admin_who_resolves_it_and_the_export_names_both(client, other_client,
                                                                                    web_config, tmp_path):
    _set_share(web_config, "size", 1.0)
    rita_csrf = login(other_client, Users.reviewer)
    label = other_client.get("/api/labels?group=size&limit=1").get_json()["labels"][0]
    post_json(other_client, f"/api/labels/{label['id']}/review", {"action": "accept", "version": label["version"]},
              rita_csrf)
    rob = client.application.test_client()
    rob_csrf = login(rob, Users.second)
    task = rob.get("/api/qa/queue?group=size").get_json()["tasks"][0]
    other = next(o for o in label["options"] if o != label["value"])
    answered = post_json(rob, f"/api/qa/{task['id']}", {"value": other}, rob_csrf).get_json()
    assert answered["status"] == "disagreed" and answered["qa_by"] == Users.second
    assert post_json(rob, f"/api/qa/{task['id']}", {"value": other}, rob_csrf).status_code == 400  # answered
    admin_csrf = login(client, Users.admin)
    assert [t["id"] for t in client.get("/api/qa/disagreements").get_json()["tasks"]] == [task["id"]]
    resolved = post_json(client, f"/api/qa/{task['id']}/resolve", {"value": other}, admin_csrf).get_json()
    assert resolved["status"] == "resolved" and resolved["resolved_by"] == Users.admin
    now = client.get(f"/api/labels/{label['id']}").get_json()
    assert (now["value"], now["status"]) == (other, "corrected")
    export_labels(Collection(web_config), "jsonl", tmp_path / "out.jsonl")
    rows = {r["image_id"]: r for r in map(json.loads, (tmp_path / "out.jsonl").open())}
    exported = rows[label["image_id"]]["labels"]["size"]
    assert (exported["reviewed_by"], exported["qa_by"]) == (Users.admin, Users.second)


def test_the_dashboard_tells_the_careless_reviewer_by_kappa(client, web_config):
    """10% QA share, two reviewers, one wrong 20% of the time; a third person QAs with the truth."""
    truth_of = {}
    rita, rob, ada = (_user(web_config, n) for n in (Users.reviewer, Users.second, Users.admin))
    with db.session_scope(web_config) as s:
        groups = review.groups(s)
        for group in groups:
            qa.set_share(s, group, 0.1)
    qa.sampler.seed(23)
    wrong = 0
    with db.session_scope(web_config) as s:
        labels = list(s.scalars(select(Label).order_by(Label.id)))
        for n, label in enumerate(labels):
            truth = label.value  # the world's truth here: what the model proposed
            truth_of[label.id] = truth
            options = [o for o in review.options(s, label.group) if o != truth]
            reviewer = rita if n % 2 == 0 else rob
            careless = reviewer == rob and (n // 2) % 5 == 0 and options  # a fifth of rob's answers
            if careless:
                wrong += 1
                review.decide(s, label.id, "correct", reviewer, label.version, options[n % len(options)])
            else:
                review.decide(s, label.id, "accept", reviewer, label.version)
        for task in qa.queue(s, ada, limit=500):
            qa.answer(s, task.id, ada, truth_of[task.label_id])
    login(client, Users.admin)
    report = {r["reviewer"]: r for r in client.get("/api/qa/report").get_json()["reviewers"]}
    careful, careless_one = report[Users.reviewer], report[Users.second]
    assert careful["qa_checked"] >= 10 and careless_one["qa_checked"] >= 10
    assert careless_one["kappa"] <= careful["kappa"] - 0.2
    assert careful["decisions"] + careless_one["decisions"] == len(labels) and wrong > 0
    # about 27 QA'd each: a first look, not a finding (the interval is as wide as the gap)
    for row in (careful, careless_one):
        assert row["kappa_low"] <= row["kappa"] <= row["kappa_high"]
        assert row["qa_checked"] < qa.MIN_QA_CHECKED and not row["enough_qa"] and row["lower_than"] == []
    assert careless_one["kappa_high"] - careless_one["kappa_low"] > 0.2
    html = client.get("/").get_data(as_text=True)
    assert f'data-testid="reviewer-{Users.second}"' in html and "Cohen's kappa" in html
    assert 'data-testid="kappa-provisional"' in html and 'data-testid="kappa-interval"' in html
    assert f"of {qa.MIN_QA_CHECKED} QA'd" in html and 'data-testid="kappa-lower"' not in html


def test_with_enough_qa_the_report_names_who_is_lower(client, web_config, monkeypatch):
    """Every decision QA'd in two groups: the careless reviewer's interval lies wholly below the other's."""
    monkeypatch.setattr(qa, "MIN_QA_CHECKED", 40)
    rita, rob, ada = (_user(web_config, n) for n in (Users.reviewer, Users.second, Users.admin))
    with db.session_scope(web_config) as s:
        for group in ("color", "size"):
            qa.set_share(s, group, 1.0)
        labels = list(s.scalars(select(Label).where(Label.group.in_(["color", "size"])).order_by(Label.id)))
        for n, label in enumerate(labels):
            reviewer = rita if n % 2 == 0 else rob
            others = [o for o in review.options(s, label.group) if o != label.value]
            if reviewer == rob and (n // 2) % 5 == 0:
                review.decide(s, label.id, "correct", reviewer, label.version, others[0])
            else:
                review.decide(s, label.id, "accept", reviewer, label.version)
        truth = {label.id: label.predicted for label in labels}
        for task in qa.queue(s, ada, limit=500):
            qa.answer(s, task.id, ada, truth[task.label_id])
    login(client, Users.admin)
    answer = client.get("/api/qa/report").get_json()
    report = {r["reviewer"]: r for r in answer["reviewers"]}
    assert answer["qa_needed"] == 40
    careful, careless_one = report[Users.reviewer], report[Users.second]
    assert careful["enough_qa"] and careless_one["enough_qa"] and careful["qa_checked"] == len(labels) // 2
    assert careless_one["lower_than"] == [Users.reviewer] and careful["lower_than"] == []
    assert careless_one["kappa_high"] < careful["kappa_low"]
    html = client.get("/").get_data(as_text=True)
    assert f"lower than {Users.reviewer}" in html and 'data-testid="kappa-provisional"' not in html
