"""The search page: free text, filters, find similar, and query errors shown beside the form."""

from __future__ import annotations

import re

from tests.web.conftest import Users, login, post_json


def _hits(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'data-testid="hit" data-image-id="(\d+)"', html)]


def test_search_page_shows_ranked_hits(client):
    login(client, Users.reviewer)
    empty = client.get("/search").get_data(as_text=True)
    assert 'data-testid="search-query"' in empty and _hits(empty) == []
    html = client.get("/search?q=a+hammer+on+a+workbench&k=12").get_data(as_text=True)
    hits = _hits(html)
    assert len(hits) == 12
    api = client.get("/api/search?q=a+hammer+on+a+workbench&k=12").get_json()["hits"]
    assert hits == [h["image_id"] for h in api]
    assert "12 results for" in html


def test_search_filters_by_label_and_status(client):
    csrf = login(client, Users.reviewer)
    label = client.get("/api/labels?group=material&limit=1").get_json()["labels"][0]
    post_json(client, f"/api/labels/{label['id']}/review", {"action": "accept", "version": label["version"]}, csrf)
    html = client.get("/search?q=wood&k=60&status=accepted").get_data(as_text=True)
    assert _hits(html) == [label["image_id"]]
    html = client.get(f"/search?q=wood&k=60&group=material&value={label['value']}").get_data(as_text=True)
    ids = _hits(html)
    expected = {l["image_id"] for l in client.get(f"/api/labels?group=material&value={label['value']}&status=&limit=500")
                .get_json()["labels"]}
    assert ids and set(ids) <= expected
    assert client.get("/search?q=wood&value=metal").status_code == 400  # a value needs its group


def test_find_similar_and_query_errors(client):
    login(client, Users.reviewer)
    html = client.get("/search?similar=3&k=8").get_data(as_text=True)
    assert len(_hits(html)) == 8 and 3 not in _hits(html) and 'data-testid="similar-to"' in html
    bad = client.get('/search?q=%22red%22+%2B')
    assert bad.status_code == 400 and 'data-testid="search-error"' in bad.get_data(as_text=True)
    echoed = client.get("/search?q=%3Cb%3Ebold%3C%2Fb%3E").get_data(as_text=True)
    assert "&lt;b&gt;bold&lt;/b&gt;" in echoed and "<b>bold</b>" not in echoed


def test_search_combines_several_label_filters(client):
    login(client, Users.reviewer)
    first = client.get("/api/labels?group=concept&limit=1").get_json()["labels"][0]
    image = client.get(f"/api/images/{first['image_id']}").get_json()
    color = next(l["value"] for l in image["labels"] if l["group"] == "color")
    url = f"/api/search?q=a+thing&k=60&group=concept&value={first['value']}&where=color={color}"
    hits = client.get(url).get_json()["hits"]
    assert first["image_id"] in [h["image_id"] for h in hits]
    for hit in hits:
        values = {l["group"]: l["value"] for l in hit["labels"]}
        assert (values["concept"], values["color"]) == (first["value"], color)
    page = client.get(f"/search?q=a+thing&k=60&where=color%3D{color}%2C+concept%3D{first['value']}")
    assert first["image_id"] in _hits(page.get_data(as_text=True))
    assert f'value="color={color}, concept={first["value"]}"' in page.get_data(as_text=True)
    assert client.get("/api/search?q=x&where=color").status_code == 400
