"""The review flow across pages: keyset paging that never skips or repeats a label while the
reviewer decides, stored skips, an undo that lasts across pages and reloads, live progress and a
light queue page. Real catalog (Alembic), real labels from labeler-tiny, the real Flask app."""

from __future__ import annotations

import gzip
import json
import re

import pytest
from sqlalchemy import select

from labeler.store import db
from labeler.review import decisions as review
from labeler.store.catalog import Label, ReviewSkip, User
from labeler.review.decisions import ReviewError, StaleLabel
from tests.web.conftest import Users, login, post_json


def _user_id(web_config, name: str) -> int:
    with db.session_scope(web_config) as s:
        return s.scalar(select(User.id).where(User.name == name))


def _page_data(html: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="review-data">(.*?)</script>', html, re.S).group(1))


def _walk(web_config, user_id: int, sort: str, first_pass: int) -> tuple[list[list[int]], list[int]]:
    """Page through the proposed concept labels 12 at a time. On the first ``first_pass`` labels it
    decides between pages, as a reviewer does: it accepts every other label and skips every fourth.
    Returns the pages' label ids and the skipped ids, in skip order."""
    pages, skipped, after, seen = [], [], None, 0
    for _ in range(20):
        with db.session_scope(web_config) as s:
            page = review.queue_page(s, "concept", None, "proposed", sort, 12, user_id, after=after)
            for label in page.labels:
                if seen < first_pass and seen % 2 == 0:
                    review.decide(s, label.id, "accept", user_id, label.version)
                elif seen < first_pass and seen % 4 == 1:
                    review.decide(s, label.id, "skip", user_id, label.version)
                    skipped.append(label.id)
                seen += 1
        if not page.labels:
            break
        pages.append([label.id for label in page.labels])
        if not page.more_after:
            break
        after = page.last
    return pages, skipped


@pytest.mark.parametrize("sort", review.SORTS)
def test_paging_while_deciding_shows_every_label_exactly_once(web_config, sort):
    rita = _user_id(web_config, Users.reviewer)
    with db.session_scope(web_config) as s:
        everyone = set(s.scalars(select(Label.id).where(Label.group == "concept", Label.status == "proposed")))
    pages, skipped = _walk(web_config, rita, sort, first_pass=len(everyone))
    shown = [label_id for page in pages for label_id in page]
    assert len(pages) >= 5 and skipped  # 60 labels, 12 a page, then the skipped ones come round again
    assert sorted(shown[:len(everyone)]) == sorted(everyone)  # each label once before any comes round again
    assert shown[len(everyone):] == skipped  # then the skipped ones, in the order they were skipped


def test_an_offset_would_have_skipped_labels_a_key_does_not(web_config):
    """The reported bug: deciding page 1 of a "proposed" queue, then asking for page 2 by offset."""
    rita = _user_id(web_config, Users.reviewer)
    with db.session_scope(web_config) as s:
        order = [label.id for label in review.list_labels(s, "concept", None, "proposed", limit=500)[0]]
        first = review.queue_page(s, "concept", None, "proposed", limit=12, user_id=rita)
        for label in first.labels:
            review.decide(s, label.id, "accept", rita, label.version)
    with db.session_scope(web_config) as s:
        by_offset = [label.id for label in review.list_labels(s, "concept", None, "proposed", limit=12, offset=12)[0]]
        by_key = [label.id for label in review.queue_page(s, "concept", None, "proposed", limit=12, user_id=rita,
                                                           after=first.last).labels]
    assert by_key == order[12:24]
    assert by_offset == order[24:36]  # what "next →" used to show: ranks 13-24 never seen


def test_paging_back_and_forth_through_the_web_pages(client, web_config):
    login(client, Users.reviewer)
    with db.session_scope(web_config) as s:
        order = [label.id for label in review.list_labels(s, "concept", None, "proposed", limit=500)[0]]
    first = client.get("/review?group=concept").get_data(as_text=True)
    assert [c["id"] for c in _page_data(first)["cards"]] == order[:48]
    next_url = re.search(r'data-testid="next-page" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = client.get(next_url).get_data(as_text=True)
    assert [c["id"] for c in _page_data(second)["cards"]] == order[48:96]
    # The batch the page loads in place is the same page, as JSON.
    batch = client.get("/api/review/queue" + next_url[next_url.index("?"):]).get_json()
    assert batch["cards"] == _page_data(second)["cards"] and batch["next"] is None
    assert client.get("/api/review/queue?group=").status_code == 400
    previous = re.search(r'data-testid="prev-page" href="([^"]+)"', second).group(1).replace("&amp;", "&")
    assert [c["id"] for c in _page_data(client.get(previous).get_data(as_text=True))["cards"]] == order[:48]
    assert client.get("/review?group=concept&after=1,x").status_code == 400
    assert client.get("/review?group=concept&after=1").status_code == 400  # a key of another sort
    assert client.get("/review?group=concept&after=nan,0,0").status_code == 400


def test_a_skip_is_stored_per_reviewer_and_cleared_by_a_decision(client, other_client, web_config):
    csrf = login(client, Users.reviewer)
    login(other_client, Users.second)
    first = _page_data(client.get("/review?group=concept").get_data(as_text=True))["cards"][0]
    skipped = post_json(client, f"/api/labels/{first['id']}/review", {"action": "skip", "version": first["version"]},
                        csrf)
    assert skipped.status_code == 200 and skipped.get_json()["label"]["version"] == first["version"]
    # After a reload it is last in rita's queue, and still first in rob's.
    mine = _page_data(client.get("/review?group=concept").get_data(as_text=True))
    assert first["id"] not in [c["id"] for c in mine["cards"]]
    with db.session_scope(web_config) as s:
        rita = _user_id(web_config, Users.reviewer)
        last = review.list_labels(s, "concept", None, "proposed", limit=500, user_id=rita)[0][-1]
    assert last.id == first["id"]
    theirs = _page_data(other_client.get("/review?group=concept").get_data(as_text=True))
    assert theirs["cards"][0]["id"] == first["id"]
    # Deciding it clears the skip.
    post_json(client, f"/api/labels/{first['id']}/review", {"action": "accept", "version": first["version"]}, csrf)
    with db.session_scope(web_config) as s:
        assert s.scalars(select(ReviewSkip)).all() == []


def test_undo_reaches_back_across_pages_and_reloads(client, web_config):
    csrf = login(client, Users.reviewer)
    cards = _page_data(client.get("/review?group=concept").get_data(as_text=True))["cards"]
    a, b = cards[0], cards[47]
    post_json(client, f"/api/labels/{a['id']}/review", {"action": "accept", "version": a["version"]}, csrf)
    post_json(client, f"/api/labels/{b['id']}/review", {"action": "correct", "value": "saw",
                                                       "version": b["version"]}, csrf)
    client.get("/review?group=concept")  # a reload: nothing of the page's own memory is left
    undone = post_json(client, "/api/review/undo", {}, csrf)
    assert undone.status_code == 200
    body = undone.get_json()
    assert body["label"]["id"] == b["id"] and body["label"]["status"] == "proposed"
    assert body["card"]["id"] == b["id"] and body["progress"]["reviewed"] == 1
    assert post_json(client, "/api/review/undo", {}, csrf).get_json()["label"]["id"] == a["id"]
    nothing = post_json(client, "/api/review/undo", {}, csrf)
    assert nothing.status_code == 400 and "nothing to undo" in nothing.get_json()["error"]


def test_undo_of_a_label_someone_changed_since_is_a_409(client, other_client, web_config):
    csrf = login(client, Users.reviewer)
    rob_csrf = login(other_client, Users.second)
    label = _page_data(client.get("/review?group=concept").get_data(as_text=True))["cards"][0]
    accepted = post_json(client, f"/api/labels/{label['id']}/review", {"action": "accept", "version": label["version"]},
                         csrf).get_json()["label"]
    post_json(other_client, f"/api/labels/{label['id']}/review", {"action": "reject", "version": accepted["version"]},
              rob_csrf)
    stale = post_json(client, "/api/review/undo", {}, csrf)
    assert stale.status_code == 409 and "changed by someone else" in stale.get_json()["error"]
    assert client.get(f"/api/labels/{label['id']}").get_json()["status"] == "rejected"  # rob's decision stands


def test_undo_last_skips_what_is_already_undone(web_config):
    rita = _user_id(web_config, Users.reviewer)
    with db.session_scope(web_config) as s:
        first, second = review.list_labels(s, "material", None, "proposed", limit=2)[0]
        ids = (first.id, second.id)
        review.decide(s, first.id, "accept", rita, first.version)
        review.decide(s, second.id, "reject", rita, second.version)
        review.decide(s, second.id, "undo", rita, second.version)  # undone on the label itself
    with db.session_scope(web_config) as s:
        assert review.undo_last(s, rita).id == ids[0]
    with db.session_scope(web_config) as s, pytest.raises(ReviewError, match="nothing to undo"):
        review.undo_last(s, rita)
    with pytest.raises(ReviewError):
        review.parse_key("1,,2")
    assert issubclass(StaleLabel, ReviewError)


def test_undo_last_passes_a_label_it_undid_that_someone_decided_since(web_config):
    rita, rob = _user_id(web_config, Users.reviewer), _user_id(web_config, Users.second)
    with db.session_scope(web_config) as s:
        first, second = review.list_labels(s, "material", None, "proposed", limit=2)[0]
        review.decide(s, first.id, "accept", rita, first.version)
        review.decide(s, second.id, "accept", rita, second.version)
    with db.session_scope(web_config) as s:
        assert review.undo_last(s, rita).id == second.id
    with db.session_scope(web_config) as s:  # rob decides the label rita already took back
        label = s.get(Label, second.id)
        review.decide(s, label.id, "reject", rob, label.version)
    with db.session_scope(web_config) as s:  # rita's next undo reaches her first decision
        assert review.undo_last(s, rita).id == first.id


def test_a_page_key_out_of_any_column_s_range_is_a_400(client):
    login(client, Users.reviewer)
    huge = "0,0,0,0.5," + "9" * 30
    assert client.get(f"/review?group=concept&after={huge}").status_code == 400
    assert client.get(f"/api/review/queue?group=concept&before={huge}").status_code == 400


def test_progress_counts_the_filter_and_the_sessions_pace(client, web_config):
    csrf = login(client, Users.reviewer)
    before = client.get("/api/review/progress?group=concept").get_json()
    assert before["reviewed"] == 0 and before["remaining"] == before["total"] > 0 and before["decisions"] == 0
    cards = _page_data(client.get("/review?group=concept").get_data(as_text=True))["cards"]
    answers = [post_json(client, f"/api/labels/{c['id']}/review", {"action": "accept", "version": c["version"]},
                         csrf).get_json() for c in cards[:3]]
    assert [a["progress"]["reviewed"] for a in answers] == [1, 2, 3]
    after = client.get("/api/review/progress?group=concept").get_json()
    assert (after["reviewed"], after["remaining"], after["decisions"]) == (3, before["total"] - 3, 3)
    assert after["per_minute"] == 3.0  # within the first minute, the count itself
    value = cards[3]["value"]
    filtered = client.get(f"/api/review/progress?group=concept&value={value}").get_json()
    assert filtered["total"] < before["total"]
    page = _page_data(client.get("/review?group=concept").get_data(as_text=True))
    assert page["progress"]["reviewed"] == 3


def test_every_option_has_a_key_shown_on_the_page(client):
    login(client, Users.reviewer)
    data = _page_data(client.get("/review?group=concept").get_data(as_text=True))
    keys = data["keys"]["concept"]
    assert len(keys) == len(data["options"]["concept"]) == 10
    assert list(keys.values())[:9] == [str(n) for n in range(1, 10)] and len(set(keys.values())) == 10
    bound = {key: action for row in data["shortcuts"] for key, action in row.items()}
    assert all(bound[key] == "option" for key in keys.values())  # one key each: none taken by another shortcut
    assert all(len(card["others"]) == 2 and card["name"].startswith("img_") for card in data["cards"])


def test_the_queue_page_is_light(client):
    login(client, Users.reviewer)
    response = client.get("/review?group=concept")
    html = response.get_data()
    assert len(_page_data(html.decode())["cards"]) == 48
    # the grid's density and range tools, QA and duplicates links, the bulk note, history, grouping and preferences
    assert len(html) <= 17_000, len(html)
    assert len(gzip.compress(html)) <= 6_000, len(gzip.compress(html))  # on the wire, with room under issue 28's 8 KB
    assert b'correct-form' not in html  # review.js builds one shared picker, not one per card


def test_the_detail_page_carries_review_controls(client):
    login(client, Users.reviewer)
    label = client.get("/api/labels?group=concept&limit=1").get_json()["labels"][0]
    html = client.get(f"/images/{label['image_id']}").get_data(as_text=True)
    data = _page_data(html)
    assert {c["group"] for c in data["cards"]} >= {"concept", "material"}
    assert 'data-testid="focus-open"' in html and 'src="/static/review.js?v=' in html
