"""The prompt lab page (admins only); the workflow itself is ``labeler.labeling.prompt_lab``'s.

Pick a prompt set, a group and an option; edit the option's prompts; preview; save the edit as a
new version into ``<home>/prompt_sets/``; run labeling with it. "Suggest prompts from reviews"
searches the group's prompts from its reviews (``labeler.labeling.prompt_search.suggest``); the
admin adopts the suggestions one option at a time or all at once, each adoption a new version.
Labeling and suggesting run as ``labeler.review.jobs`` jobs: the request only starts one, and the
page (``static/jobs.js``) follows its progress through ``/api/jobs/<id>``.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for

from ..review import jobs, overview, present
from ..labeling import prompt_lab as lab, bulk as labeling, prompt_search
from ..core import scoring
from ..errors import LabelerError
from ..core.prompts import PromptSet, PromptSetError
from .access import admin_required
from .context import collection
from .requests import integer

bp = Blueprint("lab", __name__, url_prefix="/lab")


def _selection(prompt_set: PromptSet, source, main: str | None = None) -> tuple[str, str]:
    """The group and option asked for; by default the collection's main group (when the set has
    it) and its first option. The pick form says which group it showed (``shown_group``): when the
    reviewer changed the group, the old group's option means nothing there, so the new group's
    first option opens instead of a 404."""
    group = source.get("group") or (main if main in prompt_set.groups else next(iter(prompt_set.groups)))
    group_obj = prompt_set.group(group)
    option = source.get("option")
    if not option or source.get("shown_group", group) != group:
        option = group_obj.option_names[0]
    if option not in group_obj.option_names:
        abort(404, f"no option '{option}' in group '{group}'")
    return group, option


def _posted() -> tuple[str, PromptSet, Path, str, str]:
    """The posted form's prompt set (its name, the set, its file), group and option."""
    stem = request.form.get("set", "")
    prompt_set, path = lab.open_prompt_set(collection().config.home, stem)
    group, option = _selection(prompt_set, request.form)
    return stem, prompt_set, path, group, option


def _strategy(source) -> str:
    strategy = source.get("strategy") or labeling.DEFAULT_STRATEGY
    if strategy not in scoring.STRATEGIES:
        abort(400, f"unknown strategy '{strategy}' (known: {', '.join(scoring.STRATEGIES)})")
    return strategy


def _job() -> dict:
    """What the page's job panel shows: the running job of any kind, else the last labeling job."""
    with collection().session() as s:
        job = jobs.active(s) or jobs.latest(s, jobs.LABEL)
        if job is None:
            return {"job": None, "job_url": None}
        return {"job": jobs.job_dict(job), "job_url": url_for("api.job", job_id=job.id)}


def _suggestion(stem: str, prompt_set: PromptSet, group: str) -> dict | None:
    """What the page's "Suggest prompts from reviews" shows: the newest suggestion job for this
    set and group (running, failed or done) and, once done, each option's state against the set
    as it is now (``lab.suggestion_states``)."""
    with collection().session() as s:
        job = jobs.latest_with(s, jobs.SUGGEST_PROMPTS, {"prompt_set": stem, "group": group})
        if job is None:
            return None
        shown = jobs.job_dict(job)
    result = shown["result"] if shown["status"] == "done" else None
    return {"job": shown, "result": result,
            "states": lab.suggestion_states(result, prompt_set) if result else {},
            "older": bool(result) and result.get("base") != prompt_set.content_hash}


def _panels(stem: str, prompt_set: PromptSet, group: str) -> dict:
    """The job panel's and the suggestions' template values."""
    return {**_job(), "suggestion": _suggestion(stem, prompt_set, group)}


@bp.route("")
@admin_required
def page():
    home = collection().config.home
    files = lab.prompt_set_files(home)
    if not files:
        return render_template("lab/lab.html", files=files, prompt_set=None, **_job())
    with collection().session() as s:
        record = overview.prompt_set_record(s)
        main = overview.main_group(s)
    stem = request.args.get("set") or overview.prompt_set_stem(record, list(files)) or next(iter(files))
    prompt_set, path = lab.open_prompt_set(home, stem)
    group, option = _selection(prompt_set, request.args, main)
    return render_template("lab/lab.html", files=files, stem=stem, path=path, prompt_set=prompt_set,
                           group=group, option=option, strategy=_strategy(request.args),
                           strategies=scoring.STRATEGIES,
                           prompts=lab.format_prompt_lines(prompt_set, group, option), result=None,
                           baseline=None, next_version=lab.bump_version(prompt_set.version),
                           base=prompt_set.content_hash, **_panels(stem, prompt_set, group))


@bp.route("/preview", methods=("POST",))
@admin_required
def preview_edit():
    coll = collection()
    files = lab.prompt_set_files(coll.config.home)
    stem = request.form.get("set", "")
    prompt_set, path = lab.open_prompt_set(coll.config.home, stem)
    group, option = _selection(prompt_set, request.form)
    strategy = _strategy(request.form)
    lines = request.form.get("prompts", "")
    error = None
    result = baseline = None
    try:
        result, baseline = lab.compare(coll, prompt_set, group, option, strategy, lines, path)
    except LabelerError as exc:
        error = str(exc)
    if result:
        with coll.session() as s:  # the matches' file names, for their alt text
            names = present.file_names(s, [m["image_id"] for m in result["matches"]])
        result["matches"] = [dict(m, name=names.get(m["image_id"])) for m in result["matches"]]
    return render_template("lab/lab.html", files=files, stem=stem, path=path, prompt_set=prompt_set,
                           group=group, option=option, strategy=strategy, strategies=scoring.STRATEGIES,
                           prompts=lines, result=result, baseline=baseline, error=error,
                           next_version=lab.bump_version(prompt_set.version),
                           # the version the edit started from, not the newest: a save still checks it
                           base=request.form.get("base") or prompt_set.content_hash,
                           **_panels(stem, prompt_set, group)), \
        (400 if error else 200)


@bp.route("/save", methods=("POST",))
@admin_required
def save():
    coll = collection()
    stem, prompt_set, path, group, option = _posted()
    base = request.form.get("base", "")
    if not base:
        abort(400, "the form does not say which version it edited; reload the lab and edit again")
    lines = request.form.get("prompts", "")
    try:
        saved, target, record_id = lab.save_version(coll, stem, group, option, lines, base)
    except lab.StalePromptSet as exc:
        # The edit stays on the page, now over the newer version: saving again is a choice made knowingly.
        current = exc.current
        return render_template("lab/lab.html", files=lab.prompt_set_files(coll.config.home), stem=stem,
                               path=path, prompt_set=current, group=group, option=option,
                               strategy=_strategy(request.form), strategies=scoring.STRATEGIES, prompts=lines,
                               result=None, baseline=None, error=str(exc), conflict=True,
                               next_version=lab.bump_version(current.version), base=current.content_hash,
                               **_panels(stem, current, group)), 409
    current_app.logger.info("prompt set %s saved as version %s (record %s)", stem, saved.version, record_id)
    flash(f"Saved {saved.name} version {saved.version} to {target}.")
    return redirect(url_for("lab.page", set=stem, group=group, option=option))


@bp.route("/label", methods=("POST",))
@admin_required
def run_labeling():
    """Start labeling as a background job (or find the running one) and come back to the lab."""
    coll = collection()
    stem = request.form.get("set", "")
    prompt_set, _ = lab.open_prompt_set(coll.config.home, stem)  # a bad name is refused here, not in the job
    strategy = _strategy(request.form)
    job, started = jobs.start(coll, jobs.LABEL, g.user.id, {"prompt_set": stem, "strategy": strategy})
    if started:
        flash(f"Started job {job['id']}: labeling with {prompt_set.name} v{prompt_set.version} ({strategy}).")
    else:
        flash(f"Job {job['id']} ({job['kind']}) is still running; start labeling when it has finished.")
    return redirect(url_for("lab.page", set=stem, group=request.form.get("group") or None,
                            option=request.form.get("option") or None, strategy=strategy))


def _refused(stem: str, group: str, option: str, error: str, status: int, conflict: bool = False):
    """The lab page as it is now with ``error`` on it (a refused suggest or adopt)."""
    prompt_set, path = lab.open_prompt_set(collection().config.home, stem)
    return render_template("lab/lab.html", files=lab.prompt_set_files(collection().config.home), stem=stem,
                           path=path, prompt_set=prompt_set, group=group, option=option,
                           strategy=_strategy(request.form), strategies=scoring.STRATEGIES,
                           prompts=lab.format_prompt_lines(prompt_set, group, option), result=None,
                           baseline=None, error=error, conflict=conflict,
                           next_version=lab.bump_version(prompt_set.version), base=prompt_set.content_hash,
                           **_panels(stem, prompt_set, group)), status


@bp.route("/suggest", methods=("POST",))
@admin_required
def suggest():
    """Start "Suggest prompts from reviews" for the group as a background job; back to the lab."""
    coll = collection()
    stem, prompt_set, _, group, option = _posted()
    try:  # a group without enough reviews is refused here, not by a failed job
        prompt_search.check_suggestable(coll, prompt_set, group)
    except LabelerError as exc:
        return _refused(stem, group, option, str(exc), 400)
    job, started = jobs.start(coll, jobs.SUGGEST_PROMPTS, g.user.id, {"prompt_set": stem, "group": group})
    if started:
        flash(f"Started job {job['id']}: suggesting prompts for {group} from its reviews.")
    else:
        flash(f"Job {job['id']} ({job['kind']}) is still running; suggest prompts when it has finished.")
    return redirect(url_for("lab.page", set=stem, group=group, option=option) + "#suggestions")


@bp.route("/adopt", methods=("POST",))
@admin_required
def adopt():
    """Adopt one option's suggested prompts (``adopt`` = its name) or all of them (``adopt`` empty)
    from suggestion job ``job``, as a new version of the set edited from ``base``."""
    coll = collection()
    stem, prompt_set, _, group, option = _posted()
    base = request.form.get("base", "")
    if not base:
        abort(400, "the form does not say which version it adopts into (base); reload the lab")
    job_id = integer(request.form.get("job"), "job")
    with coll.session() as s:
        job = jobs.job_dict(jobs.get(s, job_id))
    if job["kind"] != jobs.SUGGEST_PROMPTS or job["params"] != {"prompt_set": stem, "group": group}:
        abort(400, f"job {job_id} did not suggest prompts for {group} of {stem}")
    if job["status"] != "done":
        abort(400, f"job {job_id} is {job['status']}: there is nothing to adopt from it")
    which = request.form.get("adopt") or None
    try:
        saved, target, adopted = lab.adopt_suggestions(coll, stem, job["result"], [which] if which else None, base)
    except lab.StalePromptSet as exc:
        return _refused(stem, group, option, str(exc), 409, conflict=True)
    except (lab.AdoptError, PromptSetError) as exc:
        return _refused(stem, group, option, str(exc), 400)
    current_app.logger.info("prompt set %s saved as version %s with suggested prompts for %s", stem, saved.version,
                            ", ".join(adopted))
    flash(f"Adopted the suggested prompts for {group} = {', '.join(adopted)}: saved {saved.name} version "
          f"{saved.version} to {target}.")
    return redirect(url_for("lab.page", set=stem, group=group, option=which or option) + "#suggestions")
