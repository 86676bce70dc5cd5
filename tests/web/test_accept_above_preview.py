"""The accept-above preview lists exactly the labels it would accept (ids, versions, values), and
sending that list to accept-selected accepts those and no others, even if a label changed since."""

from __future__ import annotations

from tests.web.conftest import Users, login, post_json


def test_the_preview_list_is_exactly_what_gets_accepted(client):
    csrf = login(client, Users.reviewer)
    labels = client.get("/api/labels?group=material&status=proposed&sort=confidence&limit=500").get_json()["labels"]
    threshold = labels[len(labels) // 3]["confidence"]
    expected = sorted(l["id"] for l in labels if l["confidence"] >= threshold and l["value"] is not None)
    preview = client.get(f"/api/labels/accept-above?group=material&threshold={threshold}&list=1").get_json()
    assert preview["count"] == len(expected) == len(preview["labels"])
    assert [l["id"] for l in preview["labels"]] == expected
    assert [c["id"] for c in preview["cards"]] == expected[:48]
    assert client.get(f"/api/labels/accept-above?group=material&threshold={threshold}").get_json().keys() \
        == {"count", "group", "threshold", "value", "selection"}  # without list: no labels, no cards

    # Someone corrects one of them after the preview: the confirmation leaves it as it is.
    changed = next(l for l in labels if l["id"] == expected[0])
    other = next(o for o in changed["options"] if o != changed["value"])
    post_json(client, f"/api/labels/{changed['id']}/review",
              {"action": "correct", "value": other, "version": changed["version"]}, csrf)
    result = post_json(client, "/api/labels/accept-selected", {"labels": preview["labels"]}, csrf).get_json()
    assert sorted(l["id"] for l in result["accepted"]) == expected[1:]
    assert [c["id"] for c in result["conflicts"]] == [expected[0]]
    left = {l["id"] for l in client.get("/api/labels?group=material&status=proposed&limit=500").get_json()["labels"]}
    assert left == {l["id"] for l in labels} - set(expected)
