"""A decision applies only to what the reviewer saw: the version and the value its card showed.

A relabel that changes a proposal makes decisions on the old view 409s that carry the new state;
a relabel that changes nothing a reviewer sees leaves them valid. Real catalog, real labeling.
"""

from __future__ import annotations

from sqlalchemy import func, select

from labeler.collection import Collection
from labeler.core.prompts import load_prompt_set
from labeler.labeling.bulk import label_collection
from labeler.store import db
from labeler.store.catalog import Label, ReviewEvent
from tests.web.conftest import Users, login, post_json


def _events(config) -> int:
    with db.session_scope(config) as s:
        return s.scalar(select(func.count()).select_from(ReviewEvent))


def _first(client, group: str = "concept") -> dict:
    return client.get(f"/api/labels?group={group}&limit=1").get_json()["labels"][0]


def test_a_decision_on_another_value_than_the_label_has_is_a_409_with_the_new_state(client, web_config):
    csrf = login(client, Users.reviewer)
    label = _first(client)
    wrong = "mug" if label["value"] != "mug" else "saw"
    answer = post_json(client, f"/api/labels/{label['id']}/review",
                       {"action": "accept", "version": label["version"], "seen_value": wrong}, csrf)
    assert answer.status_code == 409
    body = answer.get_json()
    assert body["label"]["value"] == label["value"] and body["card"]["id"] == label["id"]
    assert body["card"]["version"] == label["version"] and body["seen_value"] == wrong
    assert _events(web_config) == 0
    assert client.get(f"/api/labels/{label['id']}").get_json()["status"] == "proposed"
    right = post_json(client, f"/api/labels/{label['id']}/review",
                      {"action": "accept", "version": label["version"], "seen_value": label["value"]}, csrf)
    assert right.status_code == 200 and right.get_json()["label"]["status"] == "accepted"


def test_a_missing_or_future_version_is_a_400_naming_it_and_stores_nothing(client, web_config):
    csrf = login(client, Users.reviewer)
    label = _first(client)
    url = f"/api/labels/{label['id']}/review"
    missing = post_json(client, url, {"action": "accept"}, csrf)
    assert missing.status_code == 400 and "version" in missing.get_json()["error"]
    future = post_json(client, url, {"action": "accept", "version": label["version"] + 5}, csrf)
    assert future.status_code == 400 and "version" in future.get_json()["error"]
    assert post_json(client, url, {"action": "accept", "version": 0}, csrf).status_code == 400
    odd = post_json(client, url, {"action": "accept", "version": label["version"], "seen_value": 3}, csrf)
    assert odd.status_code == 400 and "seen_value" in odd.get_json()["error"]
    bulk = post_json(client, "/api/labels/accept-selected", {"labels": [{"id": label["id"]}]}, csrf)
    assert bulk.status_code == 400 and "version" in bulk.get_json()["error"]
    assert _events(web_config) == 0


def test_bulk_accepts_check_the_seen_value_label_by_label(client, web_config):
    csrf = login(client, Users.reviewer)
    a, b = client.get("/api/labels?group=color&limit=2").get_json()["labels"]
    wrong = "not what the card showed"
    answer = post_json(client, "/api/labels/accept-selected", {"labels": [
        {"id": a["id"], "version": a["version"], "seen_value": a["value"]},
        {"id": b["id"], "version": b["version"], "seen_value": wrong}]}, csrf)
    assert answer.status_code == 200
    results = {r["id"]: r for r in answer.get_json()["results"]}
    assert results[a["id"]]["status"] == "accepted"
    assert results[b["id"]]["status"] == "conflict" and results[b["id"]]["current_value"] == b["value"]
    assert client.get(f"/api/labels/{b['id']}").get_json()["status"] == "proposed"


def test_a_relabel_that_changes_a_proposal_refuses_decisions_on_the_old_one(client, web_config, tmp_path):
    csrf = login(client, Users.reviewer)
    with db.session_scope(web_config) as s:
        seen = {l.id: (l.version, l.value) for l in s.scalars(select(Label).where(Label.group == "concept"))}
    # A changed prompt set: "hammer" now describes something else, so some proposals move.
    source = load_prompt_set("workshop").source
    edited = tmp_path / "workshop.yaml"
    edited.write_text(source.replace('"a tool for driving nails"', '"a red metal object on a white table"'))
    report = label_collection(Collection(web_config), load_prompt_set(edited), groups=["concept"])
    assert report.updated > 0
    with db.session_scope(web_config) as s:
        now = {l.id: (l.version, l.value, l.confidence) for l in s.scalars(select(Label).where(Label.group == "concept"))}
    changed = [i for i in seen if now[i][1] != seen[i][1]]
    kept = [i for i in seen if now[i][1] == seen[i][1] and now[i][0] == seen[i][0]]
    assert changed, "the edit should move at least one proposal"
    assert all(now[i][0] > seen[i][0] for i in changed)  # every moved proposal has a new version
    stale = changed[0]
    answer = post_json(client, f"/api/labels/{stale}/review",
                       {"action": "accept", "version": seen[stale][0], "seen_value": seen[stale][1]}, csrf)
    assert answer.status_code == 409
    assert answer.get_json()["card"]["value"] == now[stale][1] and answer.get_json()["card"]["version"] == now[stale][0]
    assert client.get(f"/api/labels/{stale}").get_json()["status"] == "proposed"
    if kept:  # a proposal the edit left as shown keeps its version: a decision on it still applies
        ok = post_json(client, f"/api/labels/{kept[0]}/review",
                       {"action": "accept", "version": seen[kept[0]][0], "seen_value": seen[kept[0]][1]}, csrf)
        assert ok.status_code == 200
    # the page's poll sees the new state of every label it shows
    polled = client.get(f"/api/review/cards?ids={','.join(map(str, changed[:5]))}").get_json()["cards"]
    assert {c["id"]: (c["version"], c["value"]) for c in polled} == {i: now[i][:2] for i in changed[:5]}
    assert client.get("/api/review/cards?ids=1,x").status_code == 400
