"""The prompt lab: edit an option's prompts, preview, save a new version, run labeling."""

from __future__ import annotations

import re
import shutil
from html import unescape as html_unescape

import yaml
from sqlalchemy import func, select

from labeler.store import db, users
from labeler.review import jobs
from labeler.store.catalog import Job, Label, PromptSetRecord
from labeler.core.prompts import PROMPT_SET_DIR, load_prompt_set
from tests.web.conftest import IMAGE_COUNT, PASSWORD, Users, login, post_json
from tests.web.test_web_learning import review_concept_as_truth, wait_for_job

EDIT = "2 | a claw hammer for nails\na hammer with a wooden handle\n<script>alert(1)</script> hammer"


def _form(csrf: str, **extra) -> dict:
    """The lab form as the page posts it, edited from the shipped version (``base``)."""
    return {"csrf_token": csrf, "set": "workshop", "group": "concept", "option": "hammer", "prompts": EDIT,
            "strategy": "weighted", "base": load_prompt_set("workshop").content_hash, **extra}


def _base(html: str) -> str:
    return re.search(r'name="base" value="([0-9a-f]+)"', html).group(1)


def _shipped_version() -> int:
    return int(yaml.safe_load((PROMPT_SET_DIR / "workshop.yaml").read_text())["version"])


def test_lab_shows_the_options_prompts(client):
    login(client, Users.admin)
    html = client.get("/lab?set=workshop&group=concept&option=hammer").get_data(as_text=True)
    textarea = html_unescape(re.search(r'data-testid="lab-prompts">(.*?)</textarea>', html, re.S).group(1))
    for prompt in load_prompt_set("workshop").group("concept").option("hammer").prompts:
        line = prompt.text if prompt.weight == 1.0 else f"{prompt.weight:g} | {prompt.text}"
        assert line in textarea.splitlines()
    assert f"Save as version {_shipped_version() + 1}" in html
    assert client.get("/lab?set=nope").status_code == 404
    assert client.get("/lab?set=workshop&group=concept&option=nope").status_code == 404


def test_preview_shows_matches_histogram_and_accuracy_per_strategy(client, web_build, web_config):
    csrf = login(client, Users.admin)
    no_truth = client.post("/lab/preview", data=_form(csrf)).get_data(as_text=True)
    assert 'data-testid="lab-no-truth"' in no_truth
    shutil.copy(web_build.images / "truth.csv", web_config.home / "truth.csv")
    response = client.post("/lab/preview", data=_form(csrf))
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and 'data-testid="lab-result"' in html
    assert len(re.findall(r'data-testid="lab-match"', html)) == 12
    assert html.count('class="hist-bin"') == 10
    table = re.search(r'data-testid="lab-accuracy">(.*?)</table>', html, re.S).group(1)
    for strategy in ("single", "mean-embedding", "mean-score", "max-score", "weighted"):
        assert f"<td>{strategy}</td>" in table
    assert "known answers (truth.csv)" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; hammer" in html and "<script>alert(1)</script>" not in html


def test_bad_prompt_lines_are_reported_not_saved(client, web_config):
    csrf = login(client, Users.admin)
    response = client.post("/lab/preview", data=_form(csrf, prompts="heavy | a hammer"))
    assert response.status_code == 400 and "must be a weight" in response.get_data(as_text=True)
    empty = client.post("/lab/save", data=_form(csrf, prompts="\n  \n"))
    assert empty.status_code == 400 and "at least one prompt" in empty.get_data(as_text=True)
    assert not (web_config.home / "prompt_sets").exists()


def test_save_writes_a_new_version_into_home_and_records_it(client, web_config):
    csrf = login(client, Users.admin)
    shipped = (PROMPT_SET_DIR / "workshop.yaml").read_text()
    response = client.post("/lab/save", data=_form(csrf))
    assert response.status_code == 302
    saved = web_config.home / "prompt_sets" / "workshop.yaml"
    data = yaml.safe_load(saved.read_text())
    assert data["version"] == _shipped_version() + 1
    hammer = data["groups"]["concept"]["options"]["hammer"]
    assert hammer["prompts"][0] == {"text": "a claw hammer for nails", "weight": 2.0}
    assert hammer["templates"] == []
    assert (PROMPT_SET_DIR / "workshop.yaml").read_text() == shipped  # the package is never written
    with db.session_scope(web_config) as s:
        versions = sorted(s.scalars(select(PromptSetRecord.version).where(PromptSetRecord.name == "workshop")))
    assert versions == [str(_shipped_version()), str(_shipped_version() + 1)]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Saved workshop version {_shipped_version() + 1}" in page
    assert f"Save as version {_shipped_version() + 2}" in page
    assert str(saved) in page


def test_run_labeling_from_the_lab_is_a_background_job_that_keeps_reviewed_labels(client, web_config):
    csrf = login(client, Users.admin)
    label = client.get("/api/labels?group=concept&limit=1").get_json()["labels"][0]
    post_json(client, f"/api/labels/{label['id']}/review",
              {"action": "correct", "value": "book", "version": label["version"]}, csrf)
    client.post("/lab/save", data=_form(csrf))
    response = client.post("/lab/label", data={"csrf_token": csrf, "set": "workshop", "strategy": "mean-score",
                                                "group": "concept", "option": "hammer"})
    # The request only starts the job and comes back to the lab, which follows its progress.
    assert response.status_code == 302 and "/lab?set=workshop" in response.headers["Location"]
    with db.session_scope(web_config) as s:
        job = s.scalars(select(Job).order_by(Job.id.desc())).first()
        job_id = job.id
    assert job.kind == "label" and job.user_id is not None
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Started job {job_id}: labeling with workshop v{_shipped_version() + 1} (mean-score)" in page
    assert f'data-job-url="/api/jobs/{job_id}"' in page and "jobs.js" in page

    done = wait_for_job(client, f"/api/jobs/{job_id}")
    assert done["status"] == "done" and done["done"] == done["total"] == IMAGE_COUNT, done
    assert done["message"].startswith(f"Labeled with workshop v{_shipped_version() + 1} (mean-score): ")
    assert done["params"] == {"prompt_set": "workshop", "strategy": "mean-score"}
    assert (done["result"]["prompt_set"], done["result"]["strategy"]) == ("workshop", "mean-score")
    assert done["result"]["kept_reviewed"] == 1
    finished = client.get("/lab?set=workshop").get_data(as_text=True)
    assert 'data-active="false"' in finished and html_unescape(done["message"]) in html_unescape(finished)
    with db.session_scope(web_config) as s:
        strategies = set(s.scalars(select(Label.strategy).where(Label.status == "proposed")))
        kept = s.get(Label, label["id"])
    assert strategies == {"mean-score"}
    assert (kept.value, kept.status, kept.strategy) == ("book", "corrected", label["strategy"])
    assert client.post("/lab/label", data={"set": "workshop"}).status_code == 400  # no CSRF token
    assert client.post("/lab/label", data={"csrf_token": csrf, "set": "nope"}).status_code == 404
    assert client.post("/lab/label", data={"csrf_token": csrf, "set": "workshop",
                                           "strategy": "guess"}).status_code == 400


def test_one_job_per_collection_whatever_its_kind(client, web_config):
    csrf = login(client, Users.admin)
    with db.session_scope(web_config) as s:
        # running in another server of this collection (whose process cannot be checked from here)
        busy = Job(kind=jobs.LEARN_AND_RELABEL, status="running", done=1, total=10, message="learning",
                   result={"owner": "another-machine.invalid:1:x"})
        s.add(busy)
        s.flush()
        busy_id = busy.id
    response = client.post("/lab/label", data={"csrf_token": csrf, "set": "workshop", "strategy": "single"})
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Job {busy_id} (learn-and-relabel) is still running" in page
    assert f'data-job-url="/api/jobs/{busy_id}"' in page and 'data-active="true"' in page
    assert re.search(r'data-testid="lab-run" data-job-start\s+disabled', page)
    with db.session_scope(web_config) as s:
        assert s.scalar(select(func.count()).select_from(Job).where(Job.kind == jobs.LABEL)) == 0
        s.get(Job, busy_id).status = "done"
    started = client.post("/lab/label", data={"csrf_token": csrf, "set": "workshop", "strategy": "single"})
    with db.session_scope(web_config) as s:
        label_job = s.scalar(select(Job.id).where(Job.kind == jobs.LABEL))
    assert label_job is not None and started.status_code == 302
    again = post_json(client, "/api/jobs", {"kind": "learn-and-relabel"}, csrf)
    if again.status_code == 200:  # the labeling job is still running: that job, not a second one
        assert again.get_json()["id"] == label_job
    wait_for_job(client, f"/api/jobs/{label_job}")
    if again.status_code == 202:
        wait_for_job(client, again.get_json()["url"])
    no_params = post_json(client, "/api/jobs", {"kind": "label"}, csrf)
    assert no_params.status_code == 400 and "needs prompt_set" in no_params.get_json()["error"]


def test_two_admins_saving_the_same_set_the_later_stale_save_is_409(client, other_client, web_config):
    ada = login(client, Users.admin)
    with db.session_scope(web_config) as s:
        users.create_user(s, "alan", PASSWORD, "admin")
    alan = login(other_client, "alan")
    page = "/lab?set=workshop&group=concept&option=hammer"
    ada_base, alan_base = _base(client.get(page).get_data(as_text=True)), _base(other_client.get(page).get_data(as_text=True))
    assert ada_base == alan_base == load_prompt_set("workshop").content_hash

    assert client.post("/lab/save", data=_form(ada, prompts="a hammer from ada", base=ada_base)).status_code == 302
    saved = web_config.home / "prompt_sets" / "workshop.yaml"
    ada_text = saved.read_text()
    late = other_client.post("/lab/save", data=_form(alan, prompts="a mallet from alan", base=alan_base))
    html = late.get_data(as_text=True)
    assert late.status_code == 409
    assert (f"prompt set &#39;workshop&#39; was saved as version {_shipped_version() + 1} by someone else "
            "after you opened it, so your edit was not saved") in html
    assert 'data-testid="lab-conflict"' in html and "a mallet from alan</textarea>" in html
    assert saved.read_text() == ada_text  # ada's version stands
    # alan saw the conflict; saving again from the page replaces ada's version knowingly
    again = other_client.post("/lab/save", data=_form(alan, prompts="a mallet from alan", base=_base(html)))
    assert again.status_code == 302
    assert yaml.safe_load(saved.read_text())["version"] == _shipped_version() + 2
    assert other_client.post("/lab/save", data=_form(alan, base="")).status_code == 400


def _suggest_form(csrf: str, group: str = "palette") -> dict:
    return {"csrf_token": csrf, "set": "workshop", "group": group, "option": ""}


def _saved_options(web_config, group: str) -> dict:
    return yaml.safe_load((web_config.home / "prompt_sets" / "workshop.yaml").read_text())["groups"][group]["options"]


def test_suggest_prompts_from_reviews_then_adopt_one_and_then_the_rest(app, client, web_build, web_config):
    csrf = login(client, Users.admin)
    # No palette reviews yet: refused at once, naming why, and no job is started.
    refused = client.post("/lab/suggest", data=_suggest_form(csrf))
    assert refused.status_code == 400
    assert "reviews of 0 option(s)" in html_unescape(refused.get_data(as_text=True))
    with db.session_scope(web_config) as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0

    reviewed = review_concept_as_truth(app.extensions["labeler"], web_build.images, per_option=4, group="palette")
    response = client.post("/lab/suggest", data=_suggest_form(csrf))
    assert response.status_code == 302 and "/lab?set=workshop&group=palette" in response.headers["Location"]
    with db.session_scope(web_config) as s:
        job_id = s.scalars(select(Job.id).order_by(Job.id.desc())).first()
    done = wait_for_job(client, f"/api/jobs/{job_id}")
    assert (done["kind"], done["status"]) == ("suggest-prompts", "done"), done
    assert done["done"] == done["total"] and done["total"] >= 4  # candidates, the folds, the final search
    assert done["params"] == {"prompt_set": "workshop", "group": "palette"}
    result = done["result"]
    shipped = load_prompt_set("workshop")
    assert list(result["options"]) == shipped.group("palette").option_names
    assert result["reviews"] == reviewed and result["base"] == shipped.content_hash
    assert done["message"].startswith("Suggested prompts for ")
    # Palette is never in a caption: the set's own words are at chance, so the search changes some.
    changed = [o for o, e in result["options"].items() if e["changed"]]
    assert changed, result

    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert page.count('data-testid="lab-suggestion"') == len(result["options"])
    cv = result["cv_accuracy"]
    assert f"{100 * cv['before']:.1f}% → {100 * cv['after']:.1f}%" in page
    assert page.count('data-testid="lab-adopt"') == len(changed)
    first = changed[0]

    one = client.post("/lab/adopt", data={**_suggest_form(csrf), "base": _base(page), "job": job_id, "adopt": first})
    assert one.status_code == 302
    options = _saved_options(web_config, "palette")
    assert options[first]["prompts"] == [{"text": t} for t in result["options"][first]["prompts"]]
    for other in set(result["options"]) - {first}:  # only the adopted option changed
        assert [p.text for p in load_prompt_set(web_config.home / "prompt_sets" / "workshop.yaml")
                .group("palette").option(other).prompts] == result["options"][other]["current"]
    after_one = client.get(one.headers["Location"]).get_data(as_text=True)
    assert f"Adopted the suggested prompts for palette = {first}: saved workshop version {_shipped_version() + 1}" \
        in html_unescape(after_one)
    assert re.search(rf'data-option="{first}" data-state="adopted"', after_one)

    again = client.post("/lab/adopt", data={**_suggest_form(csrf), "base": _base(after_one), "job": job_id,
                                            "adopt": first})
    assert again.status_code == 400 and "already adopted" in again.get_data(as_text=True)
    stale = client.post("/lab/adopt", data={**_suggest_form(csrf), "base": _base(page), "job": job_id, "adopt": ""})
    assert stale.status_code == 409 and 'data-testid="lab-conflict"' in stale.get_data(as_text=True)

    rest = client.post("/lab/adopt", data={**_suggest_form(csrf), "base": _base(after_one), "job": job_id,
                                           "adopt": ""})
    assert rest.status_code == 302
    saved = load_prompt_set(web_config.home / "prompt_sets" / "workshop.yaml")
    assert int(saved.version) == _shipped_version() + (2 if len(changed) > 1 else 1)
    for option in changed:
        assert [p.text for p in saved.group("palette").option(option).prompts] == result["options"][option]["prompts"]
    final = client.get(rest.headers["Location"]).get_data(as_text=True)
    assert 'data-testid="lab-adopt"' not in final
    nothing = client.post("/lab/adopt", data={**_suggest_form(csrf), "base": _base(final), "job": job_id, "adopt": ""})
    assert nothing.status_code == 400 and "nothing to adopt" in nothing.get_data(as_text=True)
    assert client.post("/lab/adopt", data={**_suggest_form(csrf), "base": _base(final), "job": 999999}).status_code == 404
    assert client.post("/lab/adopt", data={**_suggest_form(csrf), "base": _base(final), "job": "x"}).status_code == 400


def test_only_admins_suggest_or_adopt(client, other_client):
    csrf = login(client, Users.reviewer)
    assert client.post("/lab/suggest", data=_suggest_form(csrf)).status_code == 403
    assert client.post("/lab/adopt", data={**_suggest_form(csrf), "base": "x", "job": 1}).status_code == 403


def test_a_failed_suggestion_shows_its_one_line_and_a_running_one_disables_the_button(client, web_config):
    login(client, Users.admin)
    with db.session_scope(web_config) as s:
        s.add(Job(kind=jobs.SUGGEST_PROMPTS, status="failed", done=1, total=4,
                  message="group 'palette' has reviews of 1 option(s); the search needs reviews of at least 2",
                  result={"params": {"prompt_set": "workshop", "group": "palette"}}))
    page = html_unescape(client.get("/lab?set=workshop&group=palette").get_data(as_text=True))
    assert re.search(r'data-testid="lab-suggest-error">Job \d+ could not suggest prompts: group \'palette\' has '
                     r'reviews of 1 option', page)
    assert 'data-testid="lab-suggestion"' not in page
    # Another group's suggestions are not this group's.
    assert 'data-testid="lab-suggest-error"' not in client.get("/lab?set=workshop&group=color").get_data(as_text=True)
    with db.session_scope(web_config) as s:
        s.add(Job(kind=jobs.SUGGEST_PROMPTS, status="running", done=2, total=4, message="palette: searching",
                  result={"owner": "another-machine.invalid:1:x",
                          "params": {"prompt_set": "workshop", "group": "palette"}}))
    running = client.get("/lab?set=workshop&group=palette").get_data(as_text=True)
    assert 'data-testid="lab-suggest-running"' in running
    assert re.search(r'data-testid="lab-suggest" data-job-start\s+disabled', running)
