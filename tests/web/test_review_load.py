"""Reviewing under load: many reviewers deciding at once on the real served app.

Before ``BEGIN IMMEDIATE`` for review writes, concurrent bulk accepts of disjoint labels failed with
HTTP 500 ("database is locked"). Now every decision is either applied or answered with a 409 for
that label, and the catalog's review events are exactly the applied decisions.
"""

from __future__ import annotations

import http.client
import json
import os
import sqlite3
import threading

import pytest
from sqlalchemy import func, select

from labeler.store import db, users
from labeler.store.catalog import ReviewEvent
from tests import postgres
from tests.cli import manage_argv, serving
from tests.imagegen import write_good_images
from tests.web.conftest import PASSWORD, Users, login, post_json

REVIEWERS = 8
BATCH = 4


def _post(port: int, token: str, path: str, body: dict) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", path, json.dumps(body), {"Authorization": f"Bearer {token}",
                                                      "Content-Type": "application/json"})
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw.startswith(b"{") else {"raw": raw.decode(errors="replace")}
    finally:
        conn.close()


def _get(port: int, token: str, path: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        assert response.status == 200, response.status
        return json.loads(response.read())
    finally:
        conn.close()


@pytest.mark.slow
def test_concurrent_bulk_accepts_of_disjoint_labels_never_fail(web_config):
    tokens = []
    with db.session_scope(web_config) as s:
        for n in range(REVIEWERS):
            users.create_user(s, f"load{n}", PASSWORD, "reviewer")
            tokens.append(users.issue_token(s, f"load{n}"))
    env = {**os.environ, "LABELER_SECRET_KEY": "load-test"}
    with serving(manage_argv("--home", web_config.home, "--model", web_config.model, "serve"), env=env) as server:
        labels = _get(server.port, tokens[0], "/api/labels?limit=500&sort=id")["labels"]
        # Each reviewer owns every REVIEWERS-th label: disjoint work, all of it at the same time.
        shares = [labels[n::REVIEWERS] for n in range(REVIEWERS)]
        statuses: list[int] = []
        applied: list[int] = []
        bodies: list[dict] = []
        lock = threading.Lock()
        start = threading.Barrier(REVIEWERS)

        def reviewer(n: int) -> None:
            start.wait()
            share = shares[n]
            for i in range(0, len(share), BATCH):
                batch = share[i:i + BATCH]
                if i // BATCH % 3 == 2:  # now and then one decision at a time, as the queue's keys do
                    results = [_post(server.port, tokens[n], f"/api/labels/{label['id']}/review",
                                     {"action": "accept", "version": label["version"]}) for label in batch]
                    done = [(status, [body["label"]["id"]] if status == 200 else []) for status, body in results]
                else:
                    status, body = _post(server.port, tokens[n], "/api/labels/accept-selected",
                                         {"labels": [{"id": l["id"], "version": l["version"]} for l in batch]})
                    done = [(status, [l["id"] for l in body.get("accepted", [])])]
                    results = [(status, body)]
                with lock:
                    for status, ids in done:
                        statuses.append(status)
                        applied.extend(ids)
                    bodies.extend(body for _, body in results)

        threads = [threading.Thread(target=reviewer, args=(n,)) for n in range(REVIEWERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        log = server.stop()
        failures = [(s, b) for s, b in zip(statuses, bodies) if s >= 500]
        assert not failures, f"{len(failures)} of {len(statuses)} calls failed: {failures[:3]}, {log[-2000:]}"
    with db.session_scope(web_config) as s:
        events = s.scalar(select(func.count()).select_from(ReviewEvent))
    assert len(applied) == len(set(applied))
    assert events == len(applied)
    # Disjoint labels and fresh versions: nothing conflicts, so everything was applied.
    assert sorted(applied) == sorted(label["id"] for label in labels)


def _event_count(config) -> int:
    with db.session_scope(config) as s:
        return s.scalar(select(func.count()).select_from(ReviewEvent))


def test_accept_selected_answers_each_label(client, other_client):
    csrf = login(client, Users.reviewer)
    rob = login(other_client, Users.second)
    labels = client.get("/api/labels?group=color&limit=3&sort=id").get_json()["labels"]
    post_json(other_client, f"/api/labels/{labels[1]['id']}/review",
              {"action": "reject", "version": labels[1]["version"]}, rob)
    asked = [labels[2], labels[0], labels[1]]  # results follow the order asked, not the ids
    body = {"labels": [{"id": l["id"], "version": l["version"]} for l in asked] + [{"id": 10**9, "version": 1}]}
    response = post_json(client, "/api/labels/accept-selected", body, csrf)
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [(r["id"], r["status"]) for r in results] == [
        (labels[2]["id"], "accepted"), (labels[0]["id"], "accepted"), (labels[1]["id"], "conflict"),
        (10**9, "not_found")]
    assert results[0]["version"] == labels[2]["version"] + 1
    assert results[2]["current_version"] == labels[1]["version"] + 1 and "changed" in results[2]["message"]


def test_a_catalog_locked_past_the_retries_is_a_409_per_label_and_nothing_half_done(
        client, web_config, monkeypatch):
    csrf = login(client, Users.reviewer)
    labels = client.get("/api/labels?group=color&limit=2&sort=id").get_json()["labels"]
    body = {"labels": [{"id": l["id"], "version": l["version"]} for l in labels]}
    monkeypatch.setattr(db, "WRITE_BUSY_TIMEOUT_MS", 100)
    db.dispose_engines()  # new connections take the short wait
    holder = sqlite3.connect(web_config.home / "catalog.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock throughout
        response = post_json(client, "/api/labels/accept-selected", body, csrf)
        assert response.status_code == 409
        results = response.get_json()["results"]
        assert [(r["id"], r["status"]) for r in results] == [(l["id"], "conflict") for l in labels]
        assert "busy" in results[0]["message"]
        single = post_json(client, f"/api/labels/{labels[0]['id']}/review",
                           {"action": "accept", "version": labels[0]["version"]}, csrf)
        assert single.status_code == 409 and "busy" in single.get_json()["error"]
        holder.execute("ROLLBACK")
        assert _event_count(web_config) == 0
        retried = post_json(client, "/api/labels/accept-selected", body, csrf)
        assert retried.status_code == 200
        assert [r["status"] for r in retried.get_json()["results"]] == ["accepted", "accepted"]
        assert _event_count(web_config) == 2
    finally:
        holder.close()
        db.dispose_engines()


def test_accept_above_lists_each_accepted_label(client):
    csrf = login(client, Users.reviewer)
    done = post_json(client, "/api/labels/accept-above", {"group": "concept", "threshold": 0.0}, csrf).get_json()
    accepted = client.get("/api/labels?group=concept&status=accepted&limit=500&sort=id").get_json()["labels"]
    assert done["accepted"] == len(done["results"]) == len(accepted) > 0
    assert [(r["id"], r["status"], r["version"]) for r in done["results"]] == [
        (l["id"], "accepted", l["version"]) for l in accepted]


@pytest.mark.slow
def test_overlapping_bulk_accepts_on_postgresql_conflict_per_label(tmp_path, model_spec):
    """Every reviewer accepts the same labels, half of them in reverse order: each label is applied
    once, every other attempt is a per-label conflict, and no lock order ends in a deadlock 500."""
    reason = postgres.available()
    if reason:
        pytest.skip(reason)
    from labeler.collection import Collection
    from labeler.config import Config
    from labeler.labeling.bulk import label_collection
    from labeler.ingest.run import index_paths
    from labeler.core.prompts import load_prompt_set
    from labeler.web import create_app

    with postgres.postgres_server() as url:
        config = Config(home=tmp_path / "home", database_url=url, model=model_spec, secret_key="pg-load")
        collection = Collection(config)
        write_good_images(tmp_path / "photos", 6)
        index_paths(collection, [tmp_path / "photos"])
        label_collection(collection, load_prompt_set("workshop"))
        tokens = []
        with db.session_scope(config) as s:
            for n in range(REVIEWERS):
                users.create_user(s, f"pg{n}", PASSWORD, "reviewer")
                tokens.append(users.issue_token(s, f"pg{n}"))
        app = create_app(config, {"TESTING": True})
        above = app.test_client().post("/api/labels/accept-above", json={"group": "color", "threshold": 0.0},
                                       headers={"Authorization": f"Bearer {tokens[0]}"})
        assert above.status_code == 200  # its labels are read FOR UPDATE OF labels, in id order
        assert above.get_json()["accepted"] == len(above.get_json()["results"]) > 0
        accepted_above = len(above.get_json()["results"])
        labels = app.test_client().get("/api/labels?limit=500&sort=id",
                                       headers={"Authorization": f"Bearer {tokens[0]}"}).get_json()["labels"]
        body = [{"id": l["id"], "version": l["version"]} for l in labels]
        answers: list[tuple[int, dict]] = []
        start = threading.Barrier(REVIEWERS)

        def reviewer(n: int) -> None:
            client = app.test_client()
            start.wait()
            mine = body if n % 2 else body[::-1]
            response = client.post("/api/labels/accept-selected", json={"labels": mine},
                                   headers={"Authorization": f"Bearer {tokens[n]}"})
            answers.append((response.status_code, response.get_json()))

        threads = [threading.Thread(target=reviewer, args=(n,)) for n in range(REVIEWERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(status in (200, 409) for status, _ in answers), [a for a in answers if a[0] >= 500][:1]
        applied = [r["id"] for _, answer in answers for r in answer["results"] if r["status"] == "accepted"]
        conflicts = [r for _, answer in answers for r in answer["results"] if r["status"] == "conflict"]
        assert sorted(applied) == sorted(l["id"] for l in labels)  # each label exactly once
        assert len(conflicts) == (REVIEWERS - 1) * len(labels)
        assert _event_count(config) == len(applied) + accepted_above
        db.dispose_engines()  # before the server stops
