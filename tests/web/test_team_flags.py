"""Flags and notes on images and labels: by the API (the queue's keys) and the detail page's form,
filterable in the queue and the search, shown on the detail page, exported."""

from __future__ import annotations

import csv
import json

from labeler.collection import Collection
from labeler.exchange.export import export_labels
from tests.web.conftest import Users, login, page_csrf, post_json
from tests.web.test_web_review import _cards


def test_flags_by_api_filter_the_queue_and_the_search_and_show_on_the_detail_page(client, web_config, tmp_path):
    csrf = login(client, Users.reviewer)
    labels = client.get("/api/labels?group=concept&limit=3&sort=id").get_json()["labels"]
    first, second, third = labels
    made = post_json(client, "/api/flags", {"label_id": first["id"], "name": "ambiguous",
                                            "note": "a hammer or a mallet?"}, csrf)
    assert made.status_code == 201
    assert made.get_json()["flag"]["name"] == "ambiguous" and made.get_json()["flag"]["group"] == "concept"
    image_flag = post_json(client, "/api/flags", {"image_id": second["image_id"], "name": "bad image"}, csrf)
    assert image_flag.status_code == 201
    team_flag = post_json(client, "/api/flags", {"label_id": third["id"], "name": "ask Ada"}, csrf)
    assert team_flag.status_code == 201

    too_long = post_json(client, "/api/flags", {"label_id": first["id"], "name": "x" * 65}, csrf)
    assert too_long.status_code == 400 and "name" in too_long.get_json()["error"]
    assert post_json(client, "/api/flags", {"label_id": 10**9, "name": "ambiguous"}, csrf).status_code == 404
    assert post_json(client, "/api/flags", {"name": "ambiguous"}, csrf).status_code == 400

    # the queue: a label flag shows in its group; an image flag in every group of the image
    ambiguous = _cards(client.get("/review?group=concept&status=&flag=ambiguous").get_data(as_text=True))
    assert ambiguous == [str(first["id"])]
    bad = client.get("/api/review/queue?group=color&status=&flag=bad image").get_json()["cards"]
    assert [c["image_id"] for c in bad] == [second["image_id"]] and bad[0]["flags"] == ["bad image"]
    assert client.get("/review?group=concept&flag=" + "y" * 65).status_code == 400
    # the search
    hits = client.get("/api/search?q=a photo&k=20&flag=bad image").get_json()["hits"]
    assert [h["image_id"] for h in hits] == [second["image_id"]]
    # the detail page
    html = client.get(f"/images/{first['image_id']}").get_data(as_text=True)
    assert 'data-testid="flag-name">ambiguous<' in html and "a hammer or a mallet?" in html
    assert client.get(f"/api/images/{second['image_id']}").get_json()["flags"][0]["name"] == "bad image"

    # exported: JSON lines and CSV carry each image's flags and notes
    collection = Collection(web_config)
    export_labels(collection, "jsonl", tmp_path / "out.jsonl")
    lines = {row["image_id"]: row for row in map(json.loads, (tmp_path / "out.jsonl").open())}
    assert lines[first["image_id"]]["flags"] == [{"name": "ambiguous", "group": "concept",
                                                  "note": "a hammer or a mallet?", "user": Users.reviewer}]
    assert lines[third["image_id"]]["flags"][0]["name"] == "ask Ada"
    export_labels(collection, "csv", tmp_path / "out.csv")
    rows = {int(r["image_id"]): r for r in csv.DictReader((tmp_path / "out.csv").open())}
    assert rows[first["image_id"]]["image:flags"] == "ambiguous [concept]: a hammer or a mallet?"
    assert rows[second["image_id"]]["image:flags"] == "bad image"


def test_the_detail_page_form_flags_and_unflags_by_click(client):
    login(client, Users.reviewer)
    label = client.get("/api/labels?group=size&limit=1").get_json()["labels"][0]
    url = f"/images/{label['image_id']}"
    token = page_csrf(client, url)
    answer = client.post(f"{url}/flags", data={"name": "blurry", "label_id": str(label["id"]), "note": "motion",
                                               "csrf_token": token})
    assert answer.status_code == 302
    flags = client.get(f"/api/images/{label['image_id']}").get_json()["flags"]
    assert [(f["name"], f["group"], f["note"]) for f in flags] == [("blurry", "size", "motion")]
    assert client.post(f"{url}/flags", data={"name": "z" * 65, "csrf_token": token}).status_code == 400
    removed = client.post(f"{url}/flags/{flags[0]['id']}/remove", data={"csrf_token": token})
    assert removed.status_code == 302 and client.get(f"/api/images/{label['image_id']}").get_json()["flags"] == []
