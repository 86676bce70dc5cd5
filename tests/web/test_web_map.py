"""/map and its API (issue 26, part 3): tiles or points, bad boxes, selections that become queues."""

from __future__ import annotations

import html
import json
import re

import pytest

from tests.cli import Cli
from tests.web.conftest import Users, login, post_json


@pytest.fixture
def mapped(web_config, app):
    report = Cli(web_config.home, web_config.model).json("map")
    assert report["images"] == 60
    return report


def _queue_ids(client, url: str) -> list[int]:
    """The image ids of every card a review queue shows, page after page."""
    ids = []
    while url:
        page = client.get(url).get_data(as_text=True)
        data = json.loads(re.search(r'id="review-data">(.*?)</script>', page, re.S).group(1))
        ids += [card["image_id"] for card in data["cards"]]
        url = data.get("next")
    return ids


def test_before_any_map_the_page_says_how_to_make_one(client):
    login(client, Users.reviewer)
    page = client.get("/map")
    assert page.status_code == 200 and "manage.py map" in page.get_data(as_text=True)
    assert client.get("/api/map").status_code == 400


def test_points_bins_and_bad_input(client, mapped):
    login(client, Users.reviewer)
    page = client.get("/map").get_data(as_text=True)
    assert 'data-testid="nav-map"' in page and 'data-testid="map-canvas"' in page
    assert len(re.findall(r'data-testid="map-cluster"', page)) >= 2
    whole = client.get("/api/map").get_json()
    assert whole["mode"] == "points" and whole["total"] == whole["count"] == 60 == len(whole["ids"])
    assert whole["legend"] and all(-1 <= v < 12 for v in whole["values"])
    # the same box as bins: counts add up to the points
    binned = client.get("/api/map", query_string={"bbox": ",".join(map(str, whole["bbox"])), "size": 16})
    assert binned.status_code == 200
    x0, y0, x1, y1 = whole["bbox"]
    half = client.get("/api/map", query_string={"bbox": f"{x0},{y0},{(x0 + x1) / 2},{y1}"}).get_json()
    assert half["count"] == sum(1 for x in whole["x"] if x <= (x0 + x1) / 2)
    for colour in ("status", "confidence", "suspect", "duplicates", "color"):
        answer = client.get("/api/map", query_string={"colour": colour}).get_json()
        assert answer["colour"] == colour and len(answer["values"]) == 60
    for bad in ("1,2,3", "a,b,c,d", "0,0,nan,1", "0,0,inf,1", "0,0,0,1", ""):
        response = client.get("/api/map", query_string={"bbox": bad} if bad else {"bbox": ",,,"})
        assert response.status_code == 400 and "bbox" in response.get_json()["error"], bad
    response = client.get("/api/map", query_string={"colour": "nope"})
    assert response.status_code == 400 and "colour" in response.get_json()["error"]


def test_a_selection_opens_a_queue_of_exactly_those_images(client, mapped):
    csrf = login(client, Users.reviewer)
    whole = client.get("/api/map").get_json()
    x0, y0, x1, y1 = whole["bbox"]
    box = [x0, y0, (x0 + x1) / 2, (y0 + y1) / 2]
    want = {i for i, x, y in zip(whole["ids"], whole["x"], whole["y"]) if x <= box[2] and y <= box[3]}
    done = post_json(client, "/api/map/select", {"bbox": box}, csrf).get_json()
    assert done["count"] == len(want) > 0
    shown = _queue_ids(client, done["review_url"])
    assert sorted(shown) == sorted(want)  # each image once: its main group's label
    # a lasso (a triangle over the whole map holds the points below its diagonal)
    triangle = [[x0, y0], [x1, y0], [x0, y1]]
    lasso = post_json(client, "/api/map/select", {"polygon": triangle}, csrf).get_json()
    inside = sum(1 for x, y in zip(whole["x"], whole["y"]) if (x - x0) / (x1 - x0) + (y - y0) / (y1 - y0) < 1)
    assert abs(lasso["count"] - inside) <= 1  # a point on the edge may fall either way
    ids = post_json(client, "/api/map/select", {"ids": whole["ids"][:7]}, csrf).get_json()
    assert ids["count"] == 7
    too_many = post_json(client, "/api/map/select", {"ids": list(range(1, 100_002))}, csrf)
    assert too_many.status_code == 400 and "filter" in too_many.get_json()["error"]
    for body in ({"bbox": [0, 0, "x", 1]}, {"bbox": [0, 0, 1]}, {"polygon": [[0, 0]]}, {}, {"ids": "1,2"}):
        response = post_json(client, "/api/map/select", body, csrf)
        assert response.status_code == 400, body
    # the cluster table's button does the same without JavaScript
    page = client.get("/map").get_data(as_text=True)
    count = int(re.search(r'data-testid="map-cluster-count">(\d+)<', page).group(1))
    action = html.unescape(re.search(r'<form method="post" action="([^"]+)"', page).group(1))
    response = client.post(action, data={"csrf_token": csrf})
    assert response.status_code == 302
    assert len(set(_queue_ids(client, response.headers["Location"]))) == count


def test_search_hits_light_up(client, mapped):
    login(client, Users.reviewer)
    answer = client.get("/api/map/highlight", query_string={"q": "a red hammer", "k": 5}).get_json()
    assert answer["hits"] == 5 and len(answer["points"]) == 5
    similar = client.get("/api/map/highlight", query_string={"similar": answer["points"][0]["image_id"], "k": 3})
    assert similar.status_code == 200 and len(similar.get_json()["points"]) == 3


def test_a_selection_is_also_a_bulk_accept_that_previews_and_a_search_filter(client, mapped, web_config):
    from sqlalchemy import select

    from labeler.store import db
    from labeler.store.catalog import Label

    csrf = login(client, Users.reviewer)
    whole = client.get("/api/map").get_json()
    group = whole["group"]
    x0, y0, x1, y1 = whole["bbox"]
    box = [x0, y0, (x0 + x1) / 2, y1]
    want = {i for i, x in zip(whole["ids"], whole["x"]) if x <= box[2]}
    done = post_json(client, "/api/map/select", {"bbox": box, "group": group}, csrf).get_json()
    assert done["count"] == len(want) and 0 < len(want) < len(whole["ids"])
    assert done["accept_url"].endswith("#accept") and f"group={group}" in done["accept_url"]
    queue = client.get(done["accept_url"].split("#")[0]).get_data(as_text=True)
    assert 'data-testid="queue-selection"' in queue and f'name="selection" value="{done["selection"]}"' in queue

    def proposed(inside: bool) -> set[int]:
        with db.session_scope(web_config) as s:
            rows = s.execute(select(Label.id, Label.image_id).where(
                Label.group == group, Label.status == "proposed", Label.value.is_not(None))).all()
        return {label for label, image in rows if (image in want) == inside}

    inside, outside = proposed(True), proposed(False)
    query = {"group": group, "threshold": 0, "selection": done["selection"]}
    preview = client.get("/api/labels/accept-above", query_string={**query, "list": 1}).get_json()
    assert preview["count"] == len(inside) > 0 and {label["id"] for label in preview["labels"]} == inside
    everywhere = client.get("/api/labels/accept-above", query_string={"group": group, "threshold": 0}).get_json()
    assert everywhere["count"] == len(inside) + len(outside)
    accepted = post_json(client, "/api/labels/accept-above", query, csrf).get_json()
    assert accepted["accepted"] == len(inside) and accepted["selection"] == done["selection"]
    assert proposed(True) == set() and proposed(False) == outside  # the rest of the group untouched
    # the same selection filters a search: text or "similar", every hit inside, none missed
    hits = client.get("/api/search", query_string={"q": "a red hammer", "k": 500,
                                                   "selection": done["selection"]}).get_json()["hits"]
    assert {hit["image_id"] for hit in hits} == want
    outside_image = next(i for i in whole["ids"] if i not in want)
    similar = client.get("/api/search", query_string={"similar": outside_image, "k": 5,
                                                      "selection": done["selection"]}).get_json()["hits"]
    assert len(similar) == 5 and {hit["image_id"] for hit in similar} <= want
    page = client.get(done["search_url"] + "&q=a+red+hammer").get_data(as_text=True)
    assert 'data-testid="search-selection"' in page and f'{len(want)} images of a map selection' in page
    # an unknown selection is a 404 naming it, a word a 400, wherever a selection is read
    for url in ("/api/search?q=saw&selection=99999", "/review?selection=99999",
                f"/api/labels/accept-above?group={group}&threshold=0.5&selection=99999"):
        response = client.get(url)
        assert response.status_code == 404 and "no map selection 99999" in response.get_data(as_text=True), url
    assert client.get("/api/search?q=saw&selection=x").status_code == 400
