"""The review pages as a reviewer uses them: dashboard, queue, decisions, conflicts, detail."""

from __future__ import annotations

import json
import re

from markupsafe import escape
from sqlalchemy import select

from labeler.store import db
from labeler.store.catalog import Label
from labeler.core.prompts import load_prompt_set
from tests.web.conftest import Users, login, post_json


def _page_data(html: str) -> dict:
    """The review page's cards and keys: review.js renders the cards from this JSON."""
    return json.loads(re.search(r'<script type="application/json" id="review-data">(.*?)</script>', html, re.S).group(1))


def _cards(html: str) -> list[str]:
    return [str(card["id"]) for card in _page_data(html)["cards"]]


def test_dashboard_shows_counts_progress_and_histograms(client, web_config):
    login(client, Users.reviewer)
    html = client.get("/").get_data(as_text=True)
    with db.session_scope(web_config) as s:
        n = len(list(s.scalars(select(Label.id).where(Label.group == "concept"))))
    assert 'data-testid="group-concept"' in html and 'data-testid="histogram-color"' in html
    assert f"Reviewed 0 of {n}" in html
    assert html.count('class="hist-bin"') == 10 * html.count('data-testid="histogram-')


def test_queue_lists_proposals_most_uncertain_first_with_shortcuts(client, web_config):
    login(client, Users.reviewer)
    html = client.get("/review?group=concept").get_data(as_text=True)
    ids = list(map(int, _cards(html)))
    with db.session_scope(web_config) as s:
        margins = {l.id: l.margin for l in s.scalars(select(Label).where(Label.id.in_(ids)))}
    assert ids and [margins[i] for i in ids] == sorted(margins.values())
    for key in ("j / → , k / ←", "Shift+A", ">u<", ">x<", ">?<", "1–9", ">f<"):
        assert key in html, key
    assert 'data-testid="threshold-preview"' in html and 'src="/static/review.js?v=' in html


def test_queue_filters_by_value_and_status(client):
    csrf = login(client, Users.reviewer)
    first = client.get("/api/labels?group=concept&limit=1").get_json()["labels"][0]
    post_json(client, f"/api/labels/{first['id']}/review", {"action": "accept", "version": first["version"]}, csrf)
    accepted = client.get("/review?group=concept&status=accepted").get_data(as_text=True)
    assert _cards(accepted) == [str(first["id"])]
    proposed = client.get("/review?group=concept").get_data(as_text=True)
    assert str(first["id"]) not in _cards(proposed)
    by_value = client.get(f"/review?group=concept&status=&value={first['value']}").get_data(as_text=True)
    assert str(first["id"]) in _cards(by_value)
    assert client.get("/review?status=maybe").status_code == 400
    assert client.get("/review?page=x").status_code == 400


def test_two_reviewers_the_second_on_a_stale_view_gets_409(client, other_client):
    rita_csrf = login(client, Users.reviewer)
    rob_csrf = login(other_client, Users.second)
    label = client.get("/api/labels?group=concept&limit=1").get_json()["labels"][0]
    seen = label["version"]  # both pages show this version
    first = post_json(other_client, f"/api/labels/{label['id']}/review",
                      {"action": "correct", "value": "saw", "version": seen}, rob_csrf)
    assert first.status_code == 200
    stale = post_json(client, f"/api/labels/{label['id']}/review", {"action": "accept", "version": seen}, rita_csrf)
    assert stale.status_code == 409
    body = stale.get_json()
    assert "changed by someone else" in body["error"] and body["current_version"] == seen + 1
    now = client.get(f"/api/labels/{label['id']}").get_json()
    assert (now["value"], now["status"]) == ("saw", "corrected")
    # Reloaded, rita can decide on the fresh version.
    again = post_json(client, f"/api/labels/{label['id']}/review", {"action": "accept", "version": now["version"]},
                      rita_csrf)
    assert again.status_code == 200 and again.get_json()["label"]["value"] == "saw"


def test_queue_js_shows_conflicts_and_escapes_data():
    from pathlib import Path

    js = (Path(__file__).resolve().parents[2] / "static" / "review.js").read_text()
    helpers = (Path(__file__).resolve().parents[2] / "static" / "labeler.js").read_text()
    assert "e.status === 409" in js and "showError" in js
    assert ".innerHTML" not in js + helpers and ".outerHTML" not in js + helpers and "X-CSRF-Token" in helpers


def test_corrected_script_value_is_shown_escaped_everywhere(client):
    csrf = login(client, Users.reviewer)
    label = client.get("/api/labels?group=concept&limit=1").get_json()["labels"][0]
    evil = "<script>alert(1)</script>"
    response = post_json(client, f"/api/labels/{label['id']}/review",
                         {"action": "correct", "value": evil, "version": label["version"]}, csrf)
    assert response.status_code == 200
    pages = [client.get(f"/images/{label['image_id']}"), client.get("/review?group=concept&status=corrected"),
             client.get("/"), client.get("/search?q=hammer&k=60")]
    for page in pages:
        html = page.get_data(as_text=True)
        assert evil not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0].get_data(as_text=True)
    # The queue carries its cards as JSON inside a <script>: there "<" must be escaped as \u003c.
    assert "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e" in pages[1].get_data(as_text=True)
    assert evil in [card["value"] for card in _page_data(pages[1].get_data(as_text=True))["cards"]]


def test_detail_page_shows_scores_prompts_and_history(client):
    csrf = login(client, Users.reviewer)
    label = client.get("/api/labels?group=concept&limit=1").get_json()["labels"][0]
    post_json(client, f"/api/labels/{label['id']}/review", {"action": "reject", "version": label["version"]}, csrf)
    html = client.get(f"/images/{label['image_id']}").get_data(as_text=True)
    assert f'src="/images/{label["image_id"]}/view"' in html  # the browser-displayable rendition
    assert 'data-testid="label-concept"' in html and 'data-testid="scores-color"' in html
    assert 'data-testid="prompts-concept-hammer"' in html  # per-prompt cosines from labeling.explain
    for prompt in load_prompt_set("workshop").group("concept").option("hammer").prompts:
        assert escape(prompt.text) in html
    rows = re.findall(r'<tr data-testid="history-row">(.*?)</tr>', html, re.S)
    assert len(rows) == 1 and Users.reviewer in rows[0] and "reject" in rows[0]
    assert f'href="/search?similar={label["image_id"]}"' in html
    assert client.get("/images/999999").status_code == 404


def test_a_fresh_empty_collection_still_serves_every_page(tmp_path):
    from labeler.store import users
    from labeler.config import Config
    from labeler.web import create_app

    config = Config(home=tmp_path / "empty", secret_key="k")
    with db.session_scope(config) as s:
        users.create_user(s, "ada", "long enough pw", "admin")
    client = create_app(config, {"TESTING": True}).test_client()
    login(client, "ada", "long enough pw")
    assert 'data-testid="no-labels"' in client.get("/").get_data(as_text=True)
    assert 'data-testid="queue-empty"' in client.get("/review").get_data(as_text=True)
    search = client.get("/search?q=hammer")
    assert search.status_code == 400 and "no images are embedded" in search.get_data(as_text=True)
    assert client.get("/api/search?q=hammer").status_code == 400
    assert client.get("/api/labels").get_json() == {"labels": [], "total": 0, "limit": 50, "offset": 0}
    assert client.get("/lab").status_code == 200
    assert client.get("/images/1/thumb").status_code == 404
