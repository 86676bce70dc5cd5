"""A bulk accept is one event: one undo steps back through all of it (but never over a label someone
changed since), its "Accepted N" note comes from the catalog after a reload, and a reviewer's
history lists their newest decisions, each undoable while no one has changed its label since.
Real catalog (Alembic), real labels from labeler-tiny, the real Flask app."""

from __future__ import annotations

import re

from tests.web.conftest import Users, login, post_json


def _proposed(client, group: str) -> list[dict]:
    return client.get(f"/api/labels?group={group}&status=proposed&sort=confidence&limit=500").get_json()["labels"]


def _label(client, label_id: int) -> dict:
    return client.get(f"/api/labels/{label_id}").get_json()


def _decide(client, csrf, label: dict, action: str, **extra):
    return post_json(client, f"/api/labels/{label['id']}/review",
                     {"action": action, "version": label["version"], **extra}, csrf)


def test_a_bulk_accept_is_undone_as_one_and_keeps_what_someone_changed_since(client, other_client):
    csrf = login(client, Users.reviewer)
    rob = login(other_client, Users.second)
    labels = _proposed(client, "material")
    single = labels[-1]  # rita's decision before the bulk: reached by the undo after the bulk's
    assert _decide(client, csrf, single, "reject").status_code == 200
    threshold = labels[len(labels) // 3]["confidence"]
    client.get("/review?group=material")  # the page the reviewer works on (starts their session)
    preview = client.get(f"/api/labels/accept-above?group=material&threshold={threshold}&list=1").get_json()
    answer = post_json(client, "/api/labels/accept-selected", {"labels": preview["labels"], "threshold": threshold},
                       csrf).get_json()
    ids = [label["id"] for label in preview["labels"]]
    assert len(ids) >= 3 and sorted(label["id"] for label in answer["accepted"]) == ids
    bulk = answer["bulk"]
    assert bulk["count"] == len(ids) and bulk["group"] == "material" and bulk["threshold"] == threshold
    assert bulk["message"] == f"Accepted {len(ids)} material labels at or above {threshold:g}."

    # The note is the server's: a reload (a new page) still says it, with its undo.
    html = client.get("/review?group=material").get_data(as_text=True)
    assert f"Accepted {len(ids)} material labels" in html
    assert re.search(rf'data-testid="bulk-undo" data-bulk-id="{bulk["id"]}"', html)

    # Rob corrects one of them after the bulk: rita's undo leaves his decision as it is.
    changed = _label(other_client, ids[1])
    other = next(o for o in changed["options"] if o != changed["value"])
    assert _decide(other_client, rob, changed, "correct", value=other).status_code == 200

    undone = post_json(client, "/api/review/undo", {}, csrf)
    assert undone.status_code == 200, undone.get_json()
    body = undone.get_json()
    assert body["bulk"]["id"] == bulk["id"] and body["bulk"]["undone"] == len(ids) - 1 and body["bulk"]["kept"] == 1
    assert [k["id"] for k in body["kept"]] == [ids[1]] and "rob" in body["kept"][0]["message"]
    assert sorted(c["id"] for c in body["cards"]) == sorted(set(ids) - {ids[1]})
    before = {label["id"]: label for label in labels}
    for label_id in set(ids) - {ids[1]}:
        now = _label(client, label_id)
        assert (now["status"], now["value"]) == ("proposed", before[label_id]["value"])
    assert (_label(client, ids[1])["status"], _label(client, ids[1])["value"]) == ("corrected", other)
    assert "Undone" in client.get("/review?group=material").get_data(as_text=True)

    # The next undo reaches past the whole bulk to rita's decision before it; then nothing is left.
    assert post_json(client, "/api/review/undo", {}, csrf).get_json()["label"]["id"] == single["id"]
    assert _label(client, single["id"])["status"] == "proposed"
    nothing = post_json(client, "/api/review/undo", {}, csrf)
    assert nothing.status_code == 400 and "nothing to undo" in nothing.get_json()["error"]
    again = post_json(client, "/api/review/undo", {"bulk_id": bulk["id"]}, csrf)
    assert again.status_code == 400 and "undone already" in again.get_json()["error"]
    assert post_json(other_client, "/api/review/undo", {"bulk_id": bulk["id"]}, rob).status_code == 404  # not his


def test_the_threshold_button_s_accept_is_one_undoable_event_too(client):
    csrf = login(client, Users.reviewer)
    labels = _proposed(client, "color")
    threshold = labels[2]["confidence"]
    answer = post_json(client, "/api/labels/accept-above", {"group": "color", "threshold": threshold}, csrf).get_json()
    assert answer["accepted"] >= 3 and answer["bulk"]["count"] == answer["accepted"]
    result = post_json(client, "/api/review/undo", {"bulk_id": answer["bulk"]["id"]}, csrf).get_json()
    assert result["bulk"]["undone"] == answer["accepted"]
    assert {label["id"] for label in _proposed(client, "color")} == {label["id"] for label in labels}


def test_the_history_lists_newest_first_and_undoes_only_what_no_one_changed_since(client, other_client):
    csrf = login(client, Users.reviewer)
    rob = login(other_client, Users.second)
    first, second, third, fourth = _proposed(client, "handle")[:4]
    for label, action in ((first, "accept"), (second, "reject"), (third, "accept")):
        assert _decide(client, csrf, label, action).status_code == 200
    fresh = _label(client, fourth["id"])
    post_json(client, "/api/labels/accept-selected",
              {"labels": [{"id": fresh["id"], "version": fresh["version"]}]}, csrf)
    now = _label(other_client, second["id"])  # rob overrules rita's reject
    assert _decide(other_client, rob, now, "accept").status_code == 200

    entries = client.get("/api/review/history").get_json()["decisions"]
    assert [e["kind"] for e in entries[:4]] == ["bulk", "decision", "decision", "decision"]
    assert [e["label_id"] for e in entries[1:4]] == [third["id"], second["id"], first["id"]]
    assert entries[0]["bulk"]["count"] == 1 and entries[0]["undoable"]
    assert entries[1]["undoable"] and entries[3]["undoable"]
    assert not entries[2]["undoable"] and entries[2]["why"].startswith("rob changed it since")
    assert [e["label_id"] for e in other_client.get("/api/review/history").get_json()["decisions"]] == [second["id"]]

    refused = post_json(client, "/api/review/undo", {"event_id": entries[2]["event_id"],
                                                     "version": entries[2]["version"]}, csrf)
    assert refused.status_code == 400 and "rob changed it since" in refused.get_json()["error"]
    assert _label(client, second["id"])["status"] == "accepted"  # rob's decision stands

    # The oldest one, out of order; a stale version (the label changed after the list was read) is a 409.
    stale = post_json(client, "/api/review/undo", {"event_id": entries[3]["event_id"],
                                                   "version": entries[3]["version"] - 1}, csrf)
    assert stale.status_code == 409
    undone = post_json(client, "/api/review/undo", {"event_id": entries[3]["event_id"],
                                                    "version": entries[3]["version"]}, csrf)
    assert undone.status_code == 200 and undone.get_json()["label"]["id"] == first["id"]
    assert _label(client, first["id"])["status"] == "proposed"
    after = {e.get("event_id"): e for e in client.get("/api/review/history").get_json()["decisions"]}
    assert after[entries[3]["event_id"]]["why"] == "undone already"
    assert client.get("/api/review/history?limit=abc").status_code == 400
    assert post_json(client, "/api/review/undo", {"event_id": 10**9, "version": 1}, csrf).status_code == 404
