"""The JSON API: every route, its filters and paging, and JSON errors."""

from __future__ import annotations

from tests.web.conftest import Users, login, post_json


def test_stats(client):
    login(client, Users.reviewer)
    body = client.get("/api/stats").get_json()
    concept = body["groups"]["concept"]
    assert body["bins"] == 10 and len(concept["histogram"]) == 10
    assert concept["total"] == sum(concept["options"].values()) == sum(concept["statuses"].values())


def test_labels_filters_sorting_and_paging(client):
    login(client, Users.reviewer)
    all_concept = client.get("/api/labels?group=concept&limit=500").get_json()
    labels = all_concept["labels"]
    assert all_concept["total"] == len(labels) > 0
    assert [l["margin"] for l in labels] == sorted(l["margin"] for l in labels)
    page = client.get("/api/labels?group=concept&limit=7&offset=7").get_json()
    assert [l["id"] for l in page["labels"]] == [l["id"] for l in labels[7:14]]
    assert (page["limit"], page["offset"], page["total"]) == (7, 7, all_concept["total"])
    value = labels[0]["value"]
    filtered = client.get(f"/api/labels?group=concept&value={value}&sort=confidence").get_json()["labels"]
    assert {l["value"] for l in filtered} == {value}
    assert [l["confidence"] for l in filtered] == sorted((l["confidence"] for l in filtered), reverse=True)
    one = labels[0]
    assert set(one) >= {"id", "image_id", "group", "value", "predicted", "confidence", "margin", "status",
                        "version", "options", "scores", "thumb_url"}
    assert client.get(f"/api/labels/{one['id']}").get_json() == one
    assert client.get("/api/labels?status=maybe").status_code == 400
    assert client.get("/api/labels?limit=abc").get_json()["error"] == "limit must be an integer"
    assert client.get("/api/labels/999999").status_code == 404


def test_review_route_validates_its_body(client):
    csrf = login(client, Users.reviewer)
    label = client.get("/api/labels?limit=1").get_json()["labels"][0]
    url = f"/api/labels/{label['id']}/review"
    assert post_json(client, url, {"action": "accept"}, csrf).status_code == 400  # no version
    bad = post_json(client, url, {"action": "explode", "version": label["version"]}, csrf)
    assert bad.status_code == 400 and "unknown action" in bad.get_json()["error"]
    empty = post_json(client, url, {"action": "correct", "value": " ", "version": label["version"]}, csrf)
    assert empty.status_code == 400
    not_json = client.post(url, data="action=accept", headers={"X-CSRF-Token": csrf})
    assert not_json.status_code == 400 and "JSON" in not_json.get_json()["error"]
    assert post_json(client, "/api/labels/999999/review", {"action": "accept", "version": 1}, csrf).status_code == 404
    assert client.get(f"/api/labels/{label['id']}").get_json()["version"] == label["version"]


def test_skip_and_undo_through_the_api(client):
    csrf = login(client, Users.reviewer)
    label = client.get("/api/labels?limit=1").get_json()["labels"][0]
    url = f"/api/labels/{label['id']}/review"
    skipped = post_json(client, url, {"action": "skip", "version": label["version"]}, csrf).get_json()["label"]
    assert skipped["version"] == label["version"]
    accepted = post_json(client, url, {"action": "accept", "version": label["version"]}, csrf).get_json()["label"]
    undone = post_json(client, url, {"action": "undo", "version": accepted["version"]}, csrf).get_json()["label"]
    assert (undone["status"], undone["value"]) == ("proposed", label["value"])
    history = client.get(f"/api/images/{label['image_id']}").get_json()["history"]
    assert [(h["action"], h["user"]) for h in history] == [("accept", Users.reviewer), ("undo", Users.reviewer)]


def test_accept_selected_reports_conflicts(client, other_client):
    csrf = login(client, Users.reviewer)
    rob = login(other_client, Users.second)
    labels = client.get("/api/labels?group=color&limit=3").get_json()["labels"]
    post_json(other_client, f"/api/labels/{labels[0]['id']}/review",
              {"action": "reject", "version": labels[0]["version"]}, rob)
    body = {"labels": [{"id": l["id"], "version": l["version"]} for l in labels]}
    response = post_json(client, "/api/labels/accept-selected", body, csrf)
    assert response.status_code == 200
    result = response.get_json()
    assert [l["id"] for l in result["accepted"]] == [l["id"] for l in labels[1:]]
    assert [c["id"] for c in result["conflicts"]] == [labels[0]["id"]]
    only_stale = post_json(client, "/api/labels/accept-selected", {"labels": body["labels"][:1]}, csrf)
    assert only_stale.status_code == 409
    assert post_json(client, "/api/labels/accept-selected", {"labels": "all"}, csrf).status_code == 400


def test_accept_above_preview_then_accept(client):
    csrf = login(client, Users.reviewer)
    labels = client.get("/api/labels?group=concept&limit=500&sort=confidence").get_json()["labels"]
    threshold = labels[len(labels) // 3]["confidence"]
    expected = sum(1 for l in labels if l["confidence"] >= threshold and l["value"] is not None)
    preview = client.get(f"/api/labels/accept-above?group=concept&threshold={threshold}").get_json()
    assert preview["count"] == expected > 0
    done = post_json(client, "/api/labels/accept-above", {"group": "concept", "threshold": threshold}, csrf)
    assert done.get_json()["accepted"] == expected
    stats = client.get("/api/stats").get_json()["groups"]["concept"]
    assert stats["statuses"]["accepted"] == expected
    assert client.get("/api/labels/accept-above?group=concept&threshold=2").status_code == 400
    assert client.get("/api/labels/accept-above?threshold=0.5").status_code == 400


def test_image_detail_and_similar(client):
    login(client, Users.reviewer)
    label = client.get("/api/labels?limit=1").get_json()["labels"][0]
    image = client.get(f"/api/images/{label['image_id']}").get_json()
    assert image["id"] == label["image_id"] and image["full_url"] == f"/images/{image['id']}/full"
    assert {l["group"] for l in image["labels"]} >= {"concept", "color"}
    hits = client.get(f"/api/images/{image['id']}/similar?k=5").get_json()["hits"]
    assert len(hits) == 5 and image["id"] not in [h["image_id"] for h in hits]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert client.get("/api/images/999999").status_code == 404


def test_search_api_with_filters(client):
    login(client, Users.reviewer)
    hits = client.get("/api/search?q=a red hammer&k=10").get_json()["hits"]
    assert len(hits) == 10
    value = hits[0]["labels"][0]["value"]
    group = hits[0]["labels"][0]["group"]
    filtered = client.get(f"/api/search?q=a red hammer&k=60&group={group}&value={value}").get_json()["hits"]
    assert filtered and all(any(l["group"] == group and l["value"] == value for l in h["labels"]) for h in filtered)
    assert client.get("/api/search?q=hammer&status=accepted").get_json()["hits"] == []
    bad = client.get('/api/search?q="unclosed')
    assert bad.status_code == 400 and bad.get_json()["error"]
    assert client.get("/api/search?q=x&k=lots").status_code == 400


def test_out_of_range_ids_and_non_text_values_are_client_errors(client):
    csrf = login(client, Users.reviewer)
    huge = 2**70
    for url in (f"/api/labels/{huge}", f"/images/{huge}", f"/api/images/{huge}"):
        assert client.get(url).status_code == 404, url
    assert client.get(f"/api/labels?offset={huge}").status_code == 400
    assert client.get(f"/search?similar={huge}").status_code == 400
    assert client.get(f"/review?page={huge}").status_code == 200  # past the end: an empty page
    label = client.get("/api/labels?limit=1").get_json()["labels"][0]
    url = f"/api/labels/{label['id']}/review"
    assert post_json(client, url, {"action": "correct", "value": 5, "version": label["version"]}, csrf).status_code == 400
    assert post_json(client, "/api/labels/accept-above", {"group": ["concept"], "threshold": 0.5},
                     csrf).status_code == 400
    assert post_json(client, "/api/labels/accept-selected", {"labels": [{"id": huge, "version": 1}]},
                     csrf).status_code == 400
