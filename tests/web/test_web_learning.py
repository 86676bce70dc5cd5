"""Learning from reviews in the web app: the dashboard's summary, the background job and its API.

Real app, real labeled collection; the reviews are made with ``labeler.review.decisions.decide`` by a
reviewer who knows the world's truth. The job runs in a real thread; tests poll its row.
"""

from __future__ import annotations

import csv
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from labeler.review import jobs, decisions as review
from labeler.store.catalog import ImageFile, Job, Label
from labeler.collection import Collection
from tests.web.conftest import Users, WebBuild, login, page_csrf, post_json

JOB_TIMEOUT_S = 180.0  # two CPU cores shared with other work


def _collection(app) -> Collection:
    return app.extensions["labeler"]


def review_concept_as_truth(collection: Collection, images: Path, per_option: int = 3, group: str = "concept") -> int:
    """Accept or correct up to ``per_option`` ``group`` labels per true value; returns how many."""
    truth = {row["file"]: row[group] for row in csv.DictReader((images / "truth.csv").open())}
    with collection.session() as s:
        value_of = {image_id: truth[Path(path).name]
                    for image_id, path in s.execute(select(ImageFile.image_id, ImageFile.path))}
        taken: dict[str, int] = {}
        for label in s.scalars(select(Label).where(Label.group == group).order_by(Label.id)).all():
            value = value_of[label.image_id]
            if taken.get(value, 0) >= per_option:
                continue
            taken[value] = taken.get(value, 0) + 1
            if label.value == value:
                review.decide(s, label.id, "accept", None, label.version)
            else:
                review.decide(s, label.id, "correct", None, label.version, value)
    return sum(taken.values())


def wait_for_job(client, url: str) -> dict:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        job = client.get(url).get_json()
        if not job["active"]:
            return job
        assert time.monotonic() < deadline, f"job still {job['status']} after {JOB_TIMEOUT_S:.0f} s: {job}"
        time.sleep(0.2)


def test_admin_starts_learning_and_the_dashboard_shows_the_fit(app, client, web_build: WebBuild):
    reviewed = review_concept_as_truth(_collection(app), web_build.images)
    csrf = login(client, Users.admin)
    before = client.get("/").get_data(as_text=True)
    assert 'data-testid="fit-concept"' in before and "not learned yet" in before
    assert 'data-testid="learn-start"' in before

    response = post_json(client, "/api/jobs", {"kind": "learn-and-relabel"}, csrf)
    # The request only queues the job: the work happens after the response, in another thread.
    assert response.status_code == 202, response.get_data(as_text=True)
    started = response.get_json()
    assert started["status"] in ("queued", "running") and started["active"] and started["result"] is None
    assert started["url"] == f"/api/jobs/{started['id']}"

    again = post_json(client, "/api/jobs", {"kind": "learn-and-relabel"}, csrf)
    if again.status_code == 200:  # still running: the same job, not a second one
        assert again.get_json()["id"] == started["id"]
    else:  # it had finished already, so a new one could start
        assert again.status_code == 202 and client.get(started["url"]).get_json()["status"] == "done"
        wait_for_job(client, again.get_json()["url"])

    job = wait_for_job(client, started["url"])
    assert job["status"] == "done", job
    assert job["done"] == job["total"] > 0 and job["finished_at"]
    concept = job["result"]["learn"]["concept"]
    assert concept["reviewed"] == reviewed and concept["method"] in ("zero-shot", "cache", "head", "gda", "proker")
    assert {"zero_shot", "learned"} <= set(concept["cv_accuracy"])
    relabel = job["result"]["relabel"]
    assert relabel and sum(r["kept_reviewed"] for r in relabel) == reviewed
    assert "relabeled" in job["message"]

    html = client.get("/").get_data(as_text=True)
    card = re.search(r'data-testid="fit-concept">(.*?)</p>', html, re.S).group(1)
    assert f'data-testid="fit-reviewed">{reviewed}</span>' in card
    assert f'data-testid="fit-method">{concept["method"]}</span>' in card
    zero_shot, learned = (100 * concept["cv_accuracy"][k] for k in ("zero_shot", "learned"))
    assert f"{round(zero_shot, 1)}% zero-shot → {round(learned, 1)}% learned" in card
    assert re.search(r'data-testid="fit-color">\s*<span data-testid="fit-reviewed">0</span>', html)
    assert f'data-job-url="{started["url"]}"' in html and 'data-active="false"' in html

    # An image whose labels a fit proposed still explains itself with the prompts' own scores.
    with _collection(app).session() as s:
        image_id = s.scalar(select(Label.image_id).where(Label.group == "concept", Label.status == "proposed",
                                                         Label.strategy.like("fit:%")).limit(1))
    detail = client.get(f"/images/{image_id}").get_data(as_text=True)
    assert 'data-testid="explain-error"' not in detail and 'data-testid="prompts-concept-' in detail


def test_the_form_starts_the_job_without_javascript(app, client, web_build: WebBuild):
    review_concept_as_truth(_collection(app), web_build.images, per_option=2)
    csrf = login(client, Users.admin)
    response = client.post("/learn", data={"csrf_token": csrf})
    assert response.status_code == 302 and response.headers["Location"].endswith("/")
    with _collection(app).session() as s:
        job_id = s.scalar(select(Job.id).order_by(Job.id.desc()))
    assert f"Started job {job_id}" in client.get("/").get_data(as_text=True)
    assert wait_for_job(client, f"/api/jobs/{job_id}")["status"] == "done"
    assert client.post("/learn", data={}).status_code == 400  # no CSRF token


def test_reviewers_see_the_summary_but_cannot_start_a_job(client):
    csrf = login(client, Users.reviewer)
    html = client.get("/").get_data(as_text=True)
    assert "not learned yet" in html and 'data-testid="learn-start"' not in html
    response = post_json(client, "/api/jobs", {"kind": "learn-and-relabel"}, csrf)
    assert response.status_code == 403 and response.get_json()["error"] == "only admins can do this"
    assert client.post("/learn", data={"csrf_token": csrf}).status_code == 403
    assert client.get("/api/jobs/1").status_code == 404


def test_api_jobs_needs_a_login_and_a_known_kind(app, client):
    assert client.get("/api/jobs/1").status_code == 401
    csrf = login(client, Users.admin)
    response = post_json(client, "/api/jobs", {"kind": "teach-me"}, csrf)
    assert response.status_code == 400 and "unknown job kind 'teach-me'" in response.get_json()["error"]
    assert post_json(client, "/api/jobs", {}, csrf).status_code == 400
    assert post_json(client, "/api/jobs", {"kind": "learn-and-relabel"}).status_code == 400  # no CSRF token


def test_a_job_with_nothing_to_learn_fails_with_one_line_and_the_server_keeps_serving(client):
    csrf = login(client, Users.admin)
    response = post_json(client, "/api/jobs", {"kind": "learn-and-relabel"}, csrf)
    assert response.status_code == 202
    job = wait_for_job(client, response.get_json()["url"])
    assert job["status"] == "failed" and job["result"] is None and job["finished_at"]
    assert job["message"].startswith("no reviewed labels yet in ") and "\n" not in job["message"]
    assert client.get("/").status_code == 200
    assert client.get("/api/stats").status_code == 200
    html = client.get("/").get_data(as_text=True)
    assert "no reviewed labels yet" in html and "not learned yet" in html
    again = post_json(client, "/api/jobs", {"kind": "learn-and-relabel"}, csrf)
    assert again.status_code == 202 and again.get_json()["id"] != job["id"]  # a failed job does not block
    wait_for_job(client, again.get_json()["url"])


def test_a_job_left_running_by_a_killed_server_is_marked_failed(app, client, web_config):
    from labeler.web import create_app

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with _collection(app).session() as s:
        # What a server killed mid-job leaves: running, owned by a process that is gone.
        dead = Job(kind=jobs.LEARN_AND_RELABEL, status="running", done=1, total=10, message="learning",
                   result={"owner": f"{socket.gethostname()}:{gone.pid}:x"})
        orphan = Job(kind=jobs.LEARN_AND_RELABEL, status="running", done=3, total=10, message="relabeling",
                     result={"owner": "another-machine.invalid:1:x"})
        s.add_all([dead, orphan])
        s.flush()
        orphan_id, dead_id = orphan.id, dead.id
    create_app(web_config, {"TESTING": True})  # a restart
    login(client, Users.reviewer)
    job = client.get(f"/api/jobs/{dead_id}").get_json()
    assert job["status"] == "failed" and job["message"] == jobs.STOPPED and not job["active"]
    # Another machine's job cannot be checked from here, so it is left alone.
    assert client.get(f"/api/jobs/{orphan_id}").get_json()["status"] == "running"


def test_labels_sort_informative_through_the_api(app, client, web_build: WebBuild):
    login(client, Users.reviewer)
    response = client.get("/api/labels?group=concept&status=proposed&sort=informative&limit=500")
    assert response.status_code == 200
    body = response.get_json()
    with _collection(app).session() as s:
        expected, total = review.list_labels(s, "concept", None, "proposed", "informative", 500, 0)
        ids = [label.id for label in expected]
    assert [label["id"] for label in body["labels"]] == ids and body["total"] == total > 0
    # Nobody reviewed concept yet: the cold-start picks (typical images) come first.
    priorities = [label.priority for label in expected]
    picks = [p for p in priorities if p is not None]
    assert picks and priorities[:len(picks)] == sorted(picks)
    paged = client.get("/api/labels?group=concept&status=proposed&sort=informative&limit=5&offset=5").get_json()
    assert [label["id"] for label in paged["labels"]] == ids[5:10]

    review_concept_as_truth(_collection(app), web_build.images, per_option=1)
    after = client.get("/api/labels?group=concept&status=proposed&sort=informative&limit=500").get_json()
    assert after["total"] < total
    bad = client.get("/api/labels?sort=most-fun")
    assert bad.status_code == 400 and "informative" in bad.get_json()["error"]
    assert page_csrf(client, "/review?group=concept&sort=informative")
