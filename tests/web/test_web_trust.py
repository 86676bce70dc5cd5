"""Trusted labels on the dashboard: counts, the curve, runs with their spot-checks, "accept at 99%" and undo.

Real app on a real labeled collection; random reviews are imported from the world's truth with
``import-labels``' function, a reviewer's spot-check goes through ``review.decide``.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from sqlalchemy import select

from labeler.exchange.importing import import_labels
from labeler.labeling.bulk import label_collection
from labeler.labeling.learning import learn
from labeler.core.prompts import load_prompt_set
from labeler.review import decisions as review
from labeler.review import trust
from labeler.store.catalog import Job, Label
from tests.web.conftest import Users, WebBuild, login
from tests.web.test_web_learning import _collection, wait_for_job

GROUP = "color"


def import_truth(collection, images: Path, tmp_path: Path) -> None:
    """Every image's true colour, imported: the whole world is the random sample."""
    rows = [{"path": str(images / r["file"]), GROUP: r[GROUP]} for r in csv.DictReader((images / "truth.csv").open())]
    out = tmp_path / "truth-import.csv"
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", GROUP])
        writer.writeheader()
        writer.writerows(rows[: len(rows) * 2 // 3])
    import_labels(collection, out)


def test_dashboard_accepts_shows_runs_flags_a_run_below_its_claim_and_undoes_it(app, client, web_build: WebBuild,
                                                                              tmp_path):
    collection = _collection(app)
    csrf = login(client, Users.admin)
    html = client.get("/").get_data(as_text=True)
    assert f'data-testid="trust-{GROUP}"' in html and f'data-testid="accept-start-{GROUP}"' in html
    assert re.search(rf'data-testid="trust-suspects-{GROUP}">not audited<', html)

    # "accept at 99%" without a fit: the job fails with the one-line reason, nothing changes
    response = client.post(f"/accept/{GROUP}", data={"csrf_token": csrf})
    assert response.status_code == 302
    with collection.session() as s:
        job_id = s.scalar(select(Job.id).order_by(Job.id.desc()))
    job = wait_for_job(client, f"/api/jobs/{job_id}")
    assert job["status"] == "failed" and "has no fit" in job["message"]
    assert "has no fit" in client.get("/").get_data(as_text=True)

    import_truth(collection, web_build.images, tmp_path)
    learn(collection, [GROUP])
    label_collection(collection, load_prompt_set("workshop"), groups=[GROUP])
    done = trust.accept(collection, GROUP, 0.6)
    html = client.get("/").get_data(as_text=True)
    assert f'data-testid="run-{done["run"]}"' in html and f'data-testid="undo-run-{done["run"]}"' in html
    assert re.search(rf'data-testid="trust-auto-{GROUP}">{done["accepted"]}<', html)
    assert re.search(rf'data-testid="trust-curve-{GROUP}"><svg class="curve"', html)  # drawn here, no script
    assert 'data-below-claim="true"' not in html

    # spot-checks that find every checked auto label wrong put the run below its claim, in red
    with collection.session() as s:
        served, _ = review.list_labels(s, group=GROUP, status="auto", sort="spot-check", limit=4)
        for label in served:
            other = next(o for o in review.options(s, GROUP) if o != label.value)
            review.decide(s, label.id, "correct", None, label.version, other)
    html = client.get("/").get_data(as_text=True)
    row = re.search(rf'<tr data-testid="run-{done["run"]}"[^>]*>', html).group(0)
    assert 'data-below-claim="true"' in row and "below its claim" in html

    reviewer = app.test_client()
    reviewer_csrf = login(reviewer, Users.reviewer)
    assert reviewer.post(f"/accept/undo/{done['run']}", data={"csrf_token": reviewer_csrf}).status_code == 403
    assert client.post(f"/accept/undo/{done['run']}", data={"csrf_token": csrf}).status_code == 302
    page = client.get("/").get_data(as_text=True)
    assert f"Undid run {done['run']}" in page and "4 decided by people kept" in page
    with collection.session() as s:
        assert s.scalar(select(Label.id).where(Label.status == "auto").limit(1)) is None
    client.post(f"/accept/undo/{done['run']}", data={"csrf_token": csrf})
    assert "already undone" in client.get("/").get_data(as_text=True)


def test_dashboard_counts_suspects_per_reviewer_and_per_import(app, client, web_build: WebBuild, tmp_path):
    from labeler.review import audit
    from labeler.store.catalog import ImageFile, User

    collection = _collection(app)
    login(client, Users.admin)
    truth = list(csv.DictReader((web_build.images / "truth.csv").open()))
    options = sorted({r[GROUP] for r in truth})
    wrong = {r["file"] for r in truth[30:50:2]}  # 10 of the second file's 20 rows get another colour

    def write(name: str, rows: list[dict]) -> Path:
        out = tmp_path / name
        with out.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["path", GROUP])
            writer.writeheader()
            writer.writerows({"path": str(web_build.images / r["file"]),
                              GROUP: next(o for o in options if o != r[GROUP]) if r["file"] in wrong else r[GROUP]}
                             for r in rows)
        return out

    import_labels(collection, write("good.csv", truth[:30]))
    import_labels(collection, write("noisy batch.csv", truth[30:50]))
    with collection.session() as s:  # the reviewer decides the last 10 images, all correctly
        rita = s.scalar(select(User.id).where(User.name == Users.reviewer))
        ids = dict(s.execute(select(ImageFile.path, ImageFile.image_id)).all())
        for r in truth[50:]:
            label = s.scalar(select(Label).where(Label.group == GROUP,
                                                 Label.image_id == ids[str(web_build.images / r["file"])]))
            if label.value == r[GROUP]:
                review.decide(s, label.id, "accept", rita, label.version)
            else:
                review.decide(s, label.id, "correct", rita, label.version, r[GROUP])
    html = client.get("/").get_data(as_text=True)
    assert f'data-testid="trust-suspects-by-origin-{GROUP}"' not in html  # not audited yet

    report = audit.audit(collection, GROUP)[0]
    html = client.get("/").get_data(as_text=True)
    assert f'data-testid="trust-suspects-by-origin-{GROUP}"' in html
    rows = re.findall(rf'<tr data-testid="suspect-origin-{GROUP}" data-origin="(\w+)" data-name="([^"]*)" '
                      r'data-source="([^"]*)" data-suspects="(\d+)" data-audited="(\d+)"', html)
    by = {(origin, name, source): (int(n), int(of)) for origin, name, source, n, of in rows}
    assert set(by) == {("import", "", "good.csv"), ("import", "", "noisy batch.csv"),
                       ("reviewer", Users.reviewer, "")}
    assert [by[k][1] for k in sorted(by)] == [30, 20, 10]  # audited: every label of each origin
    shown = int(re.search(rf'data-testid="trust-suspects-{GROUP}">(\d+)<', html).group(1))
    assert sum(n for n, _ in by.values()) == shown == report["flagged"]
    assert by[("import", "", "noisy batch.csv")][0] > by[("import", "", "good.csv")][0]
    assert rows[0][2] == "noisy batch.csv"  # most suspects first
