"""The prompt lab page (admins only); the workflow itself is ``labeler.labeling.prompt_lab``'s.

Pick a prompt set, a group and an option; edit the option's prompts; preview; save the edit as a
new version into ``<home>/prompt_sets/``; run labeling with it. Labeling runs as a
``labeler.review.jobs`` job: the request only starts it, and the page (``static/jobs.js``) follows its
progress through ``/api/jobs/<id>``.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for

from ..review import jobs, overview, present
from ..labeling import prompt_lab as lab, bulk as labeling
from ..core import scoring
from ..errors import LabelerError
from ..core.prompts import PromptSet
from .access import admin_required
from .context import collection

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
                           base=prompt_set.content_hash, **_job())


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
                           base=request.form.get("base") or prompt_set.content_hash, **_job()), \
        (400 if error else 200)


@bp.route("/save", methods=("POST",))
@admin_required
def save():
    coll = collection()
    stem = request.form.get("set", "")
    prompt_set, path = lab.open_prompt_set(coll.config.home, stem)
    group, option = _selection(prompt_set, request.form)
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
                               **_job()), 409
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
