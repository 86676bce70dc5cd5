"""Leases split a team's work: a reviewer's queue claims what it shows plus the next batch, other
queues skip it, a lease lapses by itself, decisions renew it; admins assign groups to reviewers.

Real catalog made by the migrations, the real app and its JSON API.
"""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import select

from labeler.review import leases
from labeler.store import db
from labeler.store.catalog import Label, ReviewLease, User, utcnow
from tests.web.conftest import Users, login, post_json
from tests.web.test_web_review import _cards, _page_data


def _ids(config, group: str = "concept") -> list[int]:
    with db.session_scope(config) as s:
        return list(s.scalars(select(Label.id).where(Label.group == group).order_by(Label.id)))


def _user(config, name: str) -> int:
    with db.session_scope(config) as s:
        return s.scalar(select(User.id).where(User.name == name))


def test_a_claim_holds_until_it_lapses_and_only_its_holder_renews_it(web_config):
    ids = _ids(web_config)[:10]
    rita, rob = _user(web_config, Users.reviewer), _user(web_config, Users.second)
    t0 = utcnow()
    with db.session_scope(web_config) as s:
        assert leases.claim(s, rita, ids[:6], now=t0) == set(ids[:6])
    with db.session_scope(web_config) as s:
        # a minute later rob asks for all ten: he gets the four nobody holds
        assert leases.claim(s, rob, ids, now=t0 + timedelta(seconds=60)) == set(ids[6:])
    with db.session_scope(web_config) as s:
        assert leases.renew(s, rita, now=t0 + timedelta(seconds=120)) == 6
    late = t0 + timedelta(seconds=120 + leases.LEASE_SECONDS - 1)  # rita's renewed leases still hold
    with db.session_scope(web_config) as s:
        assert leases.claim(s, rob, ids, now=late) == set(ids[6:])
    gone = t0 + timedelta(seconds=120 + leases.LEASE_SECONDS + 1)  # her tab closed: they lapse by themselves
    with db.session_scope(web_config) as s:
        assert leases.claim(s, rob, ids, now=gone) == set(ids)


def test_two_claims_at_once_never_share_a_label(web_config):
    ids = _ids(web_config)
    got: dict[str, set[int]] = {}
    start = threading.Barrier(2)

    def take(name: str) -> None:
        user = _user(web_config, name)
        start.wait()
        got[name] = db.write_transaction(web_config, lambda s: leases.claim(s, user, ids))

    threads = [threading.Thread(target=take, args=(n,)) for n in (Users.reviewer, Users.second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not got[Users.reviewer] & got[Users.second]
    assert got[Users.reviewer] | got[Users.second] == set(ids)


def test_two_reviewers_queues_show_disjoint_cards_and_the_dashboard_says_who_holds_what(client, other_client,
                                                                                     web_config):
    rita_csrf = login(client, Users.reviewer)
    login(other_client, Users.second)
    mine = _cards(client.get("/review?group=color").get_data(as_text=True))
    theirs = _cards(other_client.get("/review?group=color").get_data(as_text=True))
    assert mine and not set(mine) & set(theirs)
    # rita's page claimed its cards and the next batch: rob's queue starts after all of them
    with db.session_scope(web_config) as s:
        held = dict(s.execute(select(ReviewLease.label_id, ReviewLease.user_id)).all())
    rita = _user(web_config, Users.reviewer)
    assert all(held[int(i)] == rita for i in mine)
    assert not any(held.get(int(i)) == rita for i in theirs)
    # a decision renews her leases
    label = client.get(f"/api/labels/{mine[0]}").get_json()
    with db.session_scope(web_config) as s:
        before = s.scalar(select(ReviewLease.expires_at).where(ReviewLease.label_id == int(mine[1])))
    post_json(client, f"/api/labels/{mine[0]}/review", {"action": "accept", "version": label["version"]}, rita_csrf)
    with db.session_scope(web_config) as s:
        assert s.scalar(select(ReviewLease.expires_at).where(ReviewLease.label_id == int(mine[1]))) >= before
    holdings = client.get("/api/review/leases").get_json()["holdings"]
    assert {(h["reviewer"], h["group"]) for h in holdings} >= {(Users.reviewer, "color")}
    html = client.get("/").get_data(as_text=True)
    assert 'data-testid="holdings"' in html and Users.reviewer in html


def test_an_admin_assigns_a_group_to_named_reviewers(client, other_client, web_config):
    admin_csrf = login(client, Users.admin)
    bad = post_json(client, "/api/review/assignments", {"group": "size", "reviewers": ["nobody"]}, admin_csrf)
    assert bad.status_code == 400 and "reviewers" in bad.get_json()["error"] and "nobody" in bad.get_json()["error"]
    assert post_json(client, "/api/review/assignments", {"group": "size", "reviewers": "rob"},
                     admin_csrf).status_code == 400
    given = post_json(client, "/api/review/assignments", {"group": "size", "reviewers": [Users.second]}, admin_csrf)
    assert given.status_code == 200
    assert given.get_json()["assignments"] == [{"group": "size", "value": None, "reviewers": [Users.second]}]
    rita_csrf = login(other_client, Users.reviewer)
    assert _cards(other_client.get("/review?group=size").get_data(as_text=True)) == []  # not hers
    refused = post_json(other_client, "/api/review/assignments", {"group": "size", "reviewers": [Users.reviewer]},
                        rita_csrf)
    assert refused.status_code == 403
    rob = client.application.test_client()
    login(rob, Users.second)
    assert _cards(rob.get("/review?group=size").get_data(as_text=True))  # his
    with db.session_scope(web_config) as s:
        leases.release(s, _user(web_config, Users.second))  # his page claimed the whole small group
    # a value filter: rita gets the rest of the group back once the whole-group assignment is gone
    value = client.get("/api/labels?group=size&limit=1").get_json()["labels"][0]["value"]
    client.delete("/api/review/assignments", json={"group": "size"}, headers={"X-CSRF-Token": admin_csrf})
    post_json(client, "/api/review/assignments", {"group": "size", "value": value, "reviewers": [Users.second]},
              admin_csrf)
    shown = other_client.get("/api/review/queue?group=size&status=proposed").get_json()["cards"]
    assert shown and all(card["value"] != value for card in shown)
    assert "size = " + value in client.get("/").get_data(as_text=True)


def test_migration_0010_goes_down_and_up(web_config):
    from alembic import command
    from sqlalchemy import inspect

    ids = _ids(web_config)[:3]
    with db.session_scope(web_config) as s:
        leases.claim(s, _user(web_config, Users.reviewer), ids)
    command.downgrade(db.alembic_config(web_config), "0008")
    db.dispose_engines()
    assert not {"review_leases", "review_assignments"} & set(inspect(db.get_engine(web_config)).get_table_names())
    db.upgrade(web_config)
    db.dispose_engines()
    with db.session_scope(web_config) as s:
        assert leases.claim(s, _user(web_config, Users.second), ids) == set(ids)  # the old leases went with the table


def _page_claim(html: str) -> list[int]:
    return _page_data(html)["claimed"]


def test_a_closed_tab_or_a_logout_gives_the_claim_back_at_once(client, other_client, web_config):
    """A small group (60 labels): rita's page claims it all, so rob's queue is empty; her tab's
    beacon (a form carrying the CSRF token) releases exactly what her page claimed, and so does a logout."""
    rita_csrf = login(client, Users.reviewer)
    login(other_client, Users.second)
    html = client.get("/review?group=palette").get_data(as_text=True)
    claim = _page_claim(html)
    assert len(claim) == 60 and _cards(other_client.get("/review?group=palette").get_data(as_text=True)) == []
    with db.session_scope(web_config) as s:  # a lease of hers in another group stays hers
        other = s.scalar(select(Label.id).where(Label.group == "color").order_by(Label.id))
        leases.claim(s, _user(web_config, Users.reviewer), [other])
    # the beacon: a plain form, no header; without the token it is refused and releases nothing
    assert client.post("/api/review/release", data={"ids": ",".join(map(str, claim))}).status_code in (400, 403)
    assert _cards(other_client.get("/review?group=palette").get_data(as_text=True)) == []
    bad = client.post("/api/review/release", data={"csrf_token": rita_csrf, "ids": "1,two"})
    assert bad.status_code == 400 and "ids" in bad.get_json()["error"]
    too_many = post_json(client, "/api/review/release", {"ids": list(range(1, 502))}, rita_csrf)
    assert too_many.status_code == 400 and "ids" in too_many.get_json()["error"]
    bad_time = client.post("/api/review/release", data={"csrf_token": rita_csrf, "ids": "1", "claimed_at": "soon"})
    assert bad_time.status_code == 400 and "claimed_at" in bad_time.get_json()["error"]
    # a reload claims the cards again before the old page's beacon lands: that beacon releases nothing
    old_stamp = _page_data(html)["claimed_at"]
    new_page = _page_data(client.get("/review?group=palette").get_data(as_text=True))
    assert new_page["claimed"] == claim and new_page["claimed_at"] > old_stamp
    form = {"csrf_token": rita_csrf, "ids": ",".join(map(str, claim))}
    assert client.post("/api/review/release", data={**form, "claimed_at": old_stamp}).get_json() == {"released": 0}
    answer = client.post("/api/review/release", data={**form, "claimed_at": new_page["claimed_at"]})
    assert answer.status_code == 200 and answer.get_json() == {"released": 60}
    assert len(_cards(other_client.get("/review?group=palette").get_data(as_text=True))) > 0
    with db.session_scope(web_config) as s:
        assert s.scalar(select(ReviewLease.user_id).where(ReviewLease.label_id == other)) == \
            _user(web_config, Users.reviewer)
    # the batch the page loads by itself says what it claimed too
    batch = client.get("/api/review/queue?group=concept&status=proposed").get_json()
    assert batch["claimed"] and set(c["id"] for c in batch["cards"]) <= set(batch["claimed"])
    assert batch["total_capped"] is False
    # logging out gives back everything she holds
    client.post("/auth/logout", data={"csrf_token": rita_csrf})
    with db.session_scope(web_config) as s:
        assert s.scalar(select(ReviewLease.label_id).where(ReviewLease.user_id == _user(web_config, Users.reviewer))) \
            is None
