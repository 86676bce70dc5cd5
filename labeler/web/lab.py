"""The prompt lab (admins only): the study's workflow as a tool.

Pick a prompt set, a group and an option; edit the option's prompts; preview at once its top
matches, the group's confidence histogram and each strategy's accuracy against reviewed labels;
save the edit as a new version into ``<home>/prompt_sets/`` (never into the package); run
labeling with it. Also ``explain_image`` for the detail page.

Prompt sets on offer: ``prompt_sets/*.yaml`` of the repository plus ``<home>/prompt_sets/*.yaml``;
a file in home with the same name is the edited, newer copy and wins.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import yaml
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from .. import evaluate, labeling, scoring
from ..catalog import Label, PromptSetRecord
from ..errors import LabelerError
from ..prompts import PROMPT_SET_DIR, PromptSet, PromptSetError, load_prompt_set, parse_prompt_set
from .auth import admin_required

bp = Blueprint("lab", __name__, url_prefix="/lab")

TOP_MATCHES = 12
HISTOGRAM_BINS = 10
TRUTH_FILE = "truth.csv"


# -- prompt sets on offer ------------------------------------------------------------------

def home_prompt_dir() -> Path:
    from . import collection

    return collection().config.home / "prompt_sets"


def prompt_set_files() -> dict[str, Path]:
    """``{file stem: path}``; the home copy wins over the repository's."""
    files: dict[str, Path] = {}
    for folder in (PROMPT_SET_DIR, home_prompt_dir()):
        if folder.is_dir():
            for path in sorted(folder.glob("*.yaml")):
                if path.name != "templates.yaml":  # the shared template list, not a prompt set
                    files[path.stem] = path
    return files


def open_prompt_set(stem: str) -> tuple[PromptSet, Path]:
    files = prompt_set_files()
    if stem not in files:
        abort(404, f"no prompt set '{stem}' (have: {', '.join(files) or 'none'})")
    return load_prompt_set(files[stem]), files[stem]


def prompt_set_from_record(record: PromptSetRecord) -> PromptSet:
    data = yaml.safe_load(record.source)
    return parse_prompt_set(data, record.path or record.name, record.source, record.content_hash)


def explain_image(image_id: int, prompt_set_ids: list[int]) -> dict:
    """Per group → option → per-prompt cosines for the prompt sets that made the image's labels.

    ``{"groups": {group: labeling.explain's entry}, "error": message or None}``; an explanation
    that cannot be made (no vector, model missing) leaves the page working with the stored scores.
    """
    from . import collection

    coll = collection()
    out: dict = {"groups": {}, "error": None}
    try:
        with coll.session() as s:
            records = [s.get(PromptSetRecord, i) for i in prompt_set_ids]
            strategies = {group: strategy for group, strategy in
                          s.execute(select(Label.group, Label.strategy).where(Label.image_id == image_id))}
        for record in filter(None, records):
            prompt_set = prompt_set_from_record(record)
            for group in prompt_set.groups:
                strategy = strategies.get(group) or labeling.DEFAULT_STRATEGY
                out["groups"].update(labeling.explain(coll, image_id, prompt_set, strategy, [group]))
    except LabelerError as exc:
        out["error"] = str(exc)
    return out


# -- editing ------------------------------------------------------------------------------

def parse_prompt_lines(text: str) -> list[dict]:
    """One prompt a line, optionally ``WEIGHT | text``; blank lines are ignored."""
    prompts = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        weight_text, bar, rest = line.partition("|")
        if bar:
            try:
                weight = float(weight_text)
            except ValueError:
                raise PromptSetError([f"prompt line {line!r}: the part before | must be a weight"]) from None
            prompts.append({"text": rest.strip(), "weight": weight})
        else:
            prompts.append({"text": line})
    if not prompts:
        raise PromptSetError(["an option needs at least one prompt"])
    return prompts


def format_prompt_lines(prompt_set: PromptSet, group: str, option: str) -> str:
    prompts = prompt_set.group(group).option(option).prompts
    return "\n".join(p.text if p.weight == 1.0 else f"{p.weight:g} | {p.text}" for p in prompts)


def bump_version(version: object) -> int | str:
    try:
        return int(str(version)) + 1
    except ValueError:
        return f"{version}.1"


def edited_prompt_set(path: Path, group: str, option: str, lines: str) -> tuple[PromptSet, str]:
    """The prompt set at ``path`` with ``option``'s prompts replaced and its version bumped.

    The option gets ``templates: []`` so its ensemble is exactly what the lab showed.
    Returns (validated prompt set, YAML text to write).
    """
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        raw_option = data["groups"][group]["options"][option]
    except (KeyError, TypeError):
        raise PromptSetError([f"{path.name}: no option '{option}' in group '{group}'"]) from None
    raw_option = dict(raw_option) if isinstance(raw_option, dict) else {}
    raw_option["prompts"] = parse_prompt_lines(lines)
    raw_option["templates"] = []
    data["groups"][group]["options"][option] = raw_option
    data["version"] = bump_version(data.get("version"))
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    content_hash = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return parse_prompt_set(yaml.safe_load(text), path.name, text, content_hash), text


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# -- previews -----------------------------------------------------------------------------

def truth_for(group: str) -> tuple[dict[int, str], str]:
    """Known answers of ``group`` as ``{image_id: value}`` and where they came from.

    ``<home>/truth.csv`` (columns ``file`` + one per group, like the world's) when it exists,
    else the labels people accepted or corrected.
    """
    from . import collection

    coll = collection()
    csv_path = coll.config.home / TRUTH_FILE
    if csv_path.is_file():
        values = evaluate.truth_from_csv(coll, csv_path, [group]).values.get(group, {})
        if values:
            return values, TRUTH_FILE
    return evaluate.truth_from_reviews(coll, [group]).values.get(group, {}), "reviewed labels"


def preview(prompt_set: PromptSet, group: str, option: str, strategy: str,
            truth: dict[int, str] | None = None,
            vectors: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Top matches of ``option``, the group's confidence histogram, and accuracy per strategy.

    ``vectors`` (ids, vecs) lets a caller comparing two versions read the stored vectors once.
    """
    from . import collection

    coll = collection()
    encoded = labeling.encode_groups(coll, prompt_set, [group])[group]
    ids, vecs = vectors if vectors is not None else coll.vectors.read()
    scale = labeling.logit_scale(coll)
    o = encoded.option_names.index(option)
    _, confidence, decision = encoded.decide(strategy, vecs, scale)
    top = np.argsort(-confidence[:, o], kind="stable")[:TOP_MATCHES]
    matches = [{"image_id": int(ids[i]), "confidence": float(confidence[i, o]),
                "answer": encoded.answer(int(decision.choice[i]))} for i in top]
    histogram = np.histogram(decision.confidence, bins=HISTOGRAM_BINS, range=(0.0, 1.0))[0].tolist()
    accuracy: dict[str, float] = {}
    if truth:
        try:
            results = evaluate.evaluate(coll, prompt_set, evaluate.Truth({group: truth}, []))
            accuracy = {name: metrics["accuracy"] for name, metrics in results.get(group, {}).items()}
        except LabelerError:
            accuracy = {}  # no truth value is an option of this group
    return {"matches": matches, "histogram": histogram, "chosen": int(np.sum(decision.choice == o)),
            "images": int(len(ids)), "accuracy": accuracy}


# -- views -------------------------------------------------------------------------------

def _selection(prompt_set: PromptSet, source) -> tuple[str, str]:
    group = source.get("group") or next(iter(prompt_set.groups))
    group_obj = prompt_set.group(group)
    option = source.get("option") or group_obj.option_names[0]
    if option not in group_obj.option_names:
        abort(404, f"no option '{option}' in group '{group}'")
    return group, option


def _strategy(source) -> str:
    strategy = source.get("strategy") or labeling.DEFAULT_STRATEGY
    if strategy not in scoring.STRATEGIES:
        abort(400, f"unknown strategy '{strategy}' (known: {', '.join(scoring.STRATEGIES)})")
    return strategy


@bp.route("")
@admin_required
def page():
    files = prompt_set_files()
    if not files:
        return render_template("lab/lab.html", files=files, prompt_set=None)
    stem = request.args.get("set") or next(iter(files))
    prompt_set, path = open_prompt_set(stem)
    group, option = _selection(prompt_set, request.args)
    return render_template("lab/lab.html", files=files, stem=stem, path=path, prompt_set=prompt_set,
                           group=group, option=option, strategy=_strategy(request.args),
                           strategies=scoring.STRATEGIES,
                           prompts=format_prompt_lines(prompt_set, group, option), result=None, baseline=None,
                           next_version=bump_version(prompt_set.version))


@bp.route("/preview", methods=("POST",))
@admin_required
def preview_edit():
    from . import collection

    files = prompt_set_files()
    stem = request.form.get("set", "")
    prompt_set, path = open_prompt_set(stem)
    group, option = _selection(prompt_set, request.form)
    strategy = _strategy(request.form)
    lines = request.form.get("prompts", "")
    error = None
    result = baseline = None
    try:
        edited, _ = edited_prompt_set(path, group, option, lines)
        truth, truth_source = truth_for(group)
        vectors = collection().vectors.read()
        result = preview(edited, group, option, strategy, truth, vectors)
        result.update(truth_count=len(truth), truth_source=truth_source)
        baseline = preview(prompt_set, group, option, strategy, truth, vectors)
    except LabelerError as exc:
        error = str(exc)
    return render_template("lab/lab.html", files=files, stem=stem, path=path, prompt_set=prompt_set,
                           group=group, option=option, strategy=strategy, strategies=scoring.STRATEGIES,
                           prompts=lines, result=result, baseline=baseline, error=error,
                           next_version=bump_version(prompt_set.version)), (400 if error else 200)


@bp.route("/save", methods=("POST",))
@admin_required
def save():
    from . import collection

    stem = request.form.get("set", "")
    prompt_set, path = open_prompt_set(stem)
    group, option = _selection(prompt_set, request.form)
    edited, text = edited_prompt_set(path, group, option, request.form.get("prompts", ""))
    target = home_prompt_dir() / f"{stem}.yaml"
    _write_atomically(target, text)
    saved = load_prompt_set(target)
    with collection().session() as s:
        record_id = labeling.record_prompt_set(s, saved)
    current_app.logger.info("prompt set %s saved as version %s (record %s)", stem, saved.version, record_id)
    flash(f"Saved {saved.name} version {saved.version} to {target}.")
    return redirect(url_for("lab.page", set=stem, group=group, option=option))


@bp.route("/label", methods=("POST",))
@admin_required
def run_labeling():
    from . import collection

    stem = request.form.get("set", "")
    prompt_set, _ = open_prompt_set(stem)
    strategy = _strategy(request.form)
    report = labeling.label_collection(collection(), prompt_set, strategy)
    flash(f"Labeled with {prompt_set.name} v{prompt_set.version} ({strategy}): {report.labeled} labels, "
          f"{report.updated} changed, {report.kept_reviewed} reviewed kept.")
    return redirect(url_for("review.dashboard"))
