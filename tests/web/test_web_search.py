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


def test_search_hits_carry_the_same_labels_and_links_as_the_image_api(client):
    """Hits load their labels as plain rows in one query; each must equal the label as the rest
    of the API shows it (from the ORM), including a reviewed one, and every link must work."""
    csrf = login(client, Users.reviewer)
    first = client.get("/api/search?q=a+hammer+on+a+workbench&k=10").get_json()["hits"][0]
    label = first["labels"][0]
    corrected = next(o for o in label["options"] if o != label["value"])
    post_json(client, f"/api/labels/{label['id']}/review",
              {"action": "correct", "version": label["version"], "value": corrected}, csrf)

    hits = client.get("/api/search?q=a+hammer+on+a+workbench&k=10").get_json()["hits"]
    assert len(hits) == 10 and first["image_id"] in [h["image_id"] for h in hits]
    for hit in hits:
        detail = client.get(f"/api/images/{hit['image_id']}").get_json()
        links = {"thumb_url", "full_url", "detail_url"}  # the detail's labels carry them, a hit's labels not
        expected = [{k: v for k, v in label.items() if k not in links} for label in detail["labels"]]
        assert hit["labels"] == sorted(expected, key=lambda label: label["group"])
        assert len(hit["labels"]) > 1
        for name in ("thumb_url", "full_url", "detail_url"):
            assert str(hit["image_id"]) in hit[name] and client.get(hit[name]).status_code == 200
    reviewed = next(l for h in hits for l in h["labels"] if l["id"] == label["id"])
    assert (reviewed["value"], reviewed["status"], reviewed["version"]) == (corrected, "corrected", label["version"] + 1)
    assert reviewed["reviewed_by"] is not None and reviewed["reviewed_at"] is not None


def test_a_repeated_query_text_gives_the_same_hits(client, app):
    """The second search for a text takes its vector from the process's query cache."""
    login(client, Users.reviewer)
    url = "/api/search?q=a+red+screwdriver&k=15"
    first = client.get(url).get_json()["hits"]
    from labeler import search

    assert any(key[2] == "a red screwdriver" for key in search._query_cache)
    assert client.get(url).get_json()["hits"] == first


def test_a_search_after_a_review_shows_the_reviewed_label(client):
    """Hits' label dicts are kept per process while their row is unchanged: a review changes it."""
    csrf = login(client, Users.reviewer)
    path = "/api/search?q=a+red+hammer&k=5"
    before = client.get(path).get_json()["hits"][0]
    label = next(lab for lab in before["labels"] if lab["group"] == "material")
    other = next(o for o in label["options"] if o != label["value"])
    answer = post_json(client, f"/api/labels/{label['id']}/review",
                       {"action": "correct", "value": other, "version": label["version"]}, csrf)
    assert answer.status_code == 200
    after = client.get(path).get_json()["hits"][0]
    assert after["image_id"] == before["image_id"]
    now = next(lab for lab in after["labels"] if lab["id"] == label["id"])
    assert (now["value"], now["status"], now["version"]) == (other, "corrected", label["version"] + 1)
    assert now["predicted"] == label["predicted"] and now["scores"] == label["scores"]
    assert now["value_confidence"] == label["scores"][other]["confidence"]


def test_each_hit_holds_its_label_s_review_card_in_the_chosen_group(client):
    import json

    login(client, Users.reviewer)
    for group in ("concept", "material"):
        query = "/search?q=a+hammer+on+a+workbench&k=8" + (f"&group={group}" if group != "concept" else "")
        html = client.get(query).get_data(as_text=True)
        data = json.loads(re.search(r'<script type="application/json" id="review-data">(.*?)</script>', html, re.S).group(1))
        slots = [int(i) for i in re.findall(r'data-card-slot="(\d+)"', html)]
        assert [card["id"] for card in data["cards"]] == slots and len(slots) == 8  # concept: the main group
        assert {card["group"] for card in data["cards"]} == {group} and data["group"] == group
        for image_id, card in zip(_hits(html), data["cards"]):
            label = client.get(f"/api/labels/{card['id']}").get_json()
            assert (label["image_id"], label["group"], label["version"]) == (image_id, group, card["version"])
        assert set(data["keys"][group]) == set(data["options"][group])  # every option has its key
    assert 'id="review-data"' not in client.get("/search").get_data(as_text=True)  # nothing to act on yet
