"""``label``, ``evaluate``, ``export`` and ``import-labels``: thin wrappers over labeling, evaluate, export and importing."""

from __future__ import annotations

import json
from pathlib import Path

import click
from click.core import ParameterSource

from ..core.prompts import load_prompt_set
from ..errors import LabelerError, user_file
from ..labeling import evaluate
from ..labeling.bulk import DEFAULT_STRATEGY, check_request
from ..labeling.learning import REPLAY_METHODS, replay
from ..core.scoring import STRATEGIES
from .context import Progress, emit, get_collection, get_config, get_labeler, json_option

prompt_set_option = click.option("--prompt-set", "prompt_set_path", required=True, metavar="FILE",
                                 help="Prompt set YAML, or a name (e.g. workshop): the prompt lab's saved version "
                                      "in HOME/prompt_sets/ if there is one, else the shipped prompt_sets/ file.")


@click.command("label")
@prompt_set_option
@click.option("--strategy", type=click.Choice(STRATEGIES), default=None,
              help="Force one zero-shot way of combining a group's prompts [default: each group's fit "
                   f"from reviews (manage.py learn) where it has one, else {DEFAULT_STRATEGY}].")
@click.option("--group", "groups", multiple=True, metavar="G", help="Only these groups (repeatable).")
@json_option
def label(prompt_set_path: str, strategy: str | None, groups: tuple[str, ...], as_json: bool) -> None:
    """Auto-label every embedded image with every group of a prompt set (reviewed labels are kept)."""
    api = get_labeler()
    # Validate everything before the catalog is opened, so a bad prompt set changes nothing.
    prompt_set = api.prompt_set(prompt_set_path)
    check_request(prompt_set, strategy or DEFAULT_STRATEGY, groups)
    with Progress(None, None, as_json) as bar:  # label names its passes (stage)
        report = api.label(prompt_set, strategy, groups or None, progress=bar.update, stage=bar.stage)

    def human(data: dict) -> None:
        click.echo(f"labeled {data['labeled']} (inserted {data['inserted']}, updated {data['updated']}, "
                   f"unchanged {data['unchanged']}), kept {data['kept_reviewed']} reviewed, "
                   f"{data['images']} images in {data['seconds']:.2f}s")
        for group, counts in data["groups"].items():
            top = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
            click.echo(f"  {group} ({data['methods'][group]['strategy']}): {top}")

    emit(as_json, report, human)


@click.command("evaluate")
@prompt_set_option
@click.option("--truth", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV with a file/path/image_id column and one column per group.")
@click.option("--reviewed", is_flag=True, help="Use reviewed (accepted/corrected) labels as the truth.")
@click.option("--strategy", "strategies", type=click.Choice(STRATEGIES), multiple=True,
              help="Strategies to compare (repeatable) [default: all].")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write evaluation.json, evaluation.csv and evaluation.png (replay.json, replay.png) here.")
@click.option("--replay", is_flag=True,
              help="Simulate reviewing: reveal --shots truth labels per option, learn, score the rest.")
@click.option("--shots", default="1,2,4,8,16", show_default=True, metavar="K,K,...",
              help="With --replay: reviews per option to simulate.")
@click.option("--order", type=click.Choice(["random", "informative"]), default="random", show_default=True,
              help="With --replay: which images are reviewed first.")
@click.option("--seed", type=int, default=0, show_default=True, help="With --replay: the random seed.")
@click.option("--methods", default=None, metavar="M,M,...",
              help="With --replay: also each of these learned methods alone against zero-shot "
                   f"({','.join(REPLAY_METHODS)}), beside learn's own choice.")
@click.option("--group", "groups", multiple=True, metavar="G", help="Only these groups (repeatable).")
@json_option
def evaluate_command(prompt_set_path: str, truth: Path | None, reviewed: bool, strategies: tuple[str, ...],
                     out: Path | None, replay: bool, shots: str, order: str, seed: int, methods: str | None,
                     groups: tuple[str, ...], as_json: bool) -> None:
    """Compare the strategies on images with known labels: accuracy, confidence on the truth, ECE.

    With --replay, show instead how labels improve as reviews come in (manage.py learn).
    """
    if (truth is None) == (not reviewed):
        raise LabelerError("give exactly one of --truth FILE or --reviewed")
    if replay and truth is None:
        raise LabelerError("--replay needs --truth FILE: the truth stands in for the reviewer")
    shot_counts = _shot_counts(shots)
    method_names = _methods(methods) if methods is not None else None
    if method_names and not replay:
        raise LabelerError("--methods goes with --replay: it compares learned methods as reviews come in")
    prompt_set = load_prompt_set(prompt_set_path, home=get_config().home)
    collection = get_collection()
    with collection.session() as s:
        collection.models.require_id(s)
    if truth:
        with user_file(truth):
            known = evaluate.truth_from_csv(collection, truth, list(groups or prompt_set.groups))
    else:
        known = evaluate.truth_from_reviews(collection, list(groups or prompt_set.groups))
    if replay:
        _replay(collection, prompt_set, known, shot_counts, order, seed, groups, out, as_json, method_names)
        return
    results = evaluate.evaluate(collection, prompt_set, known, strategies or STRATEGIES)
    written = {}
    if out:
        with user_file(out):
            written = evaluate.write_outputs(results, out)
    if known.unmatched:
        click.echo(f"warning: {len(known.unmatched)} truth rows match no image (first: {known.unmatched[0]})",
                   err=True)

    def human(_: dict) -> None:
        for group, by_strategy in results.items():
            click.echo(f"\n{group}  (n={next(iter(by_strategy.values()))['n']})")
            click.echo(f"  {'strategy':<16}{'accuracy':>10}{'true conf':>11}{'ECE':>8}")
            for strategy, m in by_strategy.items():
                click.echo(f"  {strategy:<16}{m['accuracy']:>10.3f}{m['mean_true_confidence']:>11.3f}{m['ece']:>8.3f}")
        for _kind, path in written.items():
            click.echo(f"wrote {path}")

    emit(as_json, evaluate.public(results), human)


def _shot_counts(text: str) -> list[int]:
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise LabelerError(f"--shots must be whole numbers separated by commas, e.g. 1,2,4,8,16; got {text!r}") from None
    if not counts or counts[0] < 1:
        raise LabelerError(f"--shots must be positive, e.g. 1,2,4,8,16; got {text!r}")
    return counts


def _methods(text: str) -> list[str]:
    names = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [m for m in names if m not in REPLAY_METHODS]
    if not names or unknown:
        raise LabelerError(f"--methods takes some of {','.join(REPLAY_METHODS)}; got {text!r}")
    return names


def _replay(collection, prompt_set, known, shots: list[int], order: str, seed: int, groups, out: Path | None,
            as_json: bool, methods: list[str] | None = None) -> None:
    with Progress("replaying", None, as_json):
        results = replay(collection, prompt_set, known.values, shots, order=order, seed=seed, groups=groups or None,
                         methods=methods)
    if out:
        with user_file(out):
            out.mkdir(parents=True, exist_ok=True)
            (out / "replay.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
            evaluate.plot_replay(results, out / "replay.png", order)

    def human(data: dict) -> None:
        click.echo(f"{'group':<14}{'zero-shot':>10}" + "".join(f"{k:>8}" for k in shots) + f"   ({order} order)")
        for group, r in data.items():
            click.echo(f"{group:<14}{r['zero_shot']:>10.3f}"
                       + "".join(f"{r['shots'][k]['accuracy']:>8.3f}" for k in shots))
            for method, by_shot in r.get("methods", {}).items():
                click.echo(f"  {method:<22}" + "".join(f"{by_shot[k]['accuracy']:>8.3f}" for k in shots))
        if out:
            click.echo(f"wrote {out / 'replay.json'} and {out / 'replay.png'}")

    emit(as_json, results, human)


EXPORT_FORMATS = ["csv", "jsonl", "coco", "labelstudio", "hf", "fiftyone"]
SUFFIX_FORMATS = {"": "csv", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def export_format(out: Path) -> str:
    """The format ``export`` writes when ``--format`` is not given, from OUT's suffix. A ``.json``
    could be COCO or Label Studio, and another suffix any format, so those are for the user to say:
    ``export labels.json`` used to write CSV into a file of that name."""
    suffix = out.suffix.lower()
    if suffix in SUFFIX_FORMATS:
        return SUFFIX_FORMATS[suffix]
    if suffix == ".json":
        raise LabelerError(f"{out.name}: a .json export is COCO or Label Studio: pass --format coco or "
                           "--format labelstudio (or name it .jsonl for a label a line)")
    raise LabelerError(f"{out.name}: pass --format ({', '.join(EXPORT_FORMATS)}); without it OUT ends in "
                       ".csv or .jsonl")


@click.command("export")
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), default=None,
              help="[default: from OUT's name: csv for .csv or no suffix, jsonl for .jsonl or .ndjson]")
@click.option("--group", "groups", multiple=True, metavar="G", help="Only these groups (repeatable).")
@click.option("--concept-group", default="concept", show_default=True, help="The group that gives COCO categories.")
@click.option("--prompt-set", "prompt_set_path", default=None, metavar="FILE",
              help="Order COCO categories and Label Studio choices by this prompt set's options "
                   "[default: the one each group's labels came from].")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="COCO file names and Label Studio image URLs are relative to this folder "
                   "[default: the images' common folder].")
@click.option("--image-url-prefix", default=None, metavar="URL",
              help="Label Studio: data.image is this + the path relative to --root "
                   "[default: /data/local-files/?d=, Label Studio's local files route].")
@click.option("--coco-segmentation", is_flag=True,
              help="COCO: give each annotation a whole-image polygon (FiftyOne then builds a full-size mask per image).")
@click.option("--split-predictions", is_flag=True,
              help="COCO: OUT holds the reviewed labels as ground truth, OUT-stem.predictions.json the model's "
                   "proposals as COCOeval results.")
@click.option("--no-formula-guard", "formula_guard", is_flag=True, flag_value=False, default=True,
              help="CSV: write cells as they are, for pandas or polars; by default a cell a spreadsheet would "
                   "run as a formula gets a leading '.")
@click.option("--force", is_flag=True, help="Replace OUT (and the Label Studio config beside it) if it exists.")
@click.option("--exclude-duplicates", is_flag=True,
              help="Leave out images marked as duplicates (a plain export names the image each duplicates).")
@click.option("--label-studio-url", default=None, metavar="URL",
              help="Label Studio: also create a project at this server (e.g. http://localhost:8080) with the "
                   "labeling config, a Local Storage at the images' folder and the tasks, through its REST API.")
@click.option("--token", default=None, metavar="T", envvar="LABEL_STUDIO_API_KEY", show_envvar=True,
              help="With --label-studio-url: a personal access token (Account & Settings > Personal Access "
                   "Token), or a legacy token where the organization allows them.")
@click.option("--project-title", default=None, metavar="TITLE",
              help="With --label-studio-url: the project's title [default: labeler OUT-stem].")
@click.argument("out", type=click.Path(path_type=Path))
@json_option
def export(fmt: str, groups: tuple[str, ...], concept_group: str, prompt_set_path: str | None, root: Path | None,
           image_url_prefix: str | None, coco_segmentation: bool, split_predictions: bool, formula_guard: bool,
           force: bool, exclude_duplicates: bool, label_studio_url: str | None, token: str | None,
           project_title: str | None, out: Path, as_json: bool) -> None:
    """Export every label to OUT as csv, jsonl, coco, labelstudio (with OUT-stem.labeling-config.xml)
    or hf (OUT: the folder that holds the images; metadata.parquet, README.md and dataset_info.json go there)
    or fiftyone (OUT: a folder for data.json, labels.json and fields/GROUP[_predicted].json).

    Each label says what the model proposed (predicted, with its confidence) and what a reviewer
    decided (value, status, reviewed_by). OUT must not exist unless --force.
    """
    given = click.get_current_context().get_parameter_source("token") == ParameterSource.COMMANDLINE
    if (label_studio_url is not None and token is None) or (label_studio_url is None and given):
        # LABEL_STUDIO_API_KEY alone, set for other tools, asks for nothing
        raise LabelerError("--label-studio-url and --token (or LABEL_STUDIO_API_KEY) go together")
    fmt = fmt or export_format(out)
    with Progress("sending to Label Studio", None, as_json) as bar:
        result = get_labeler().export(fmt, out, groups or None, concept_group, prompt_set_path, root,
                                      image_url_prefix, force, coco_segmentation=coco_segmentation,
                                      split_predictions=split_predictions, formula_guard=formula_guard,
                                      exclude_duplicates=exclude_duplicates,
                                      label_studio=(label_studio_url, token) if label_studio_url else None,
                                      project_title=project_title, progress=bar.update, total=bar.set_total)

    def human(d: dict) -> None:
        click.echo(f"wrote {d['labels']} labels of {d['images']} images to {d.get('metadata', d['path'])}")
        if "predictions" in d:
            click.echo(f"wrote the model's proposals as COCO results to {d['predictions']}")
        if "config" in d:
            click.echo(f"wrote the Label Studio labeling config to {d['config']}")
        if "settings" in d:
            settings = d["settings"]
            click.echo(f"Label Studio serves these images with (written to {d['settings_file']}):")
            click.echo("  LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true")
            click.echo(f"  LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={settings['LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT']}")
            click.echo(f"  and a Local Storage (Source Storage > Local files) at {settings['local_storage_path']}")
        if "label_studio" in d:
            made = d["label_studio"]
            click.echo(f"created Label Studio project {made['project']} with {made['tasks']} tasks "
                       f"({made['predictions']} predictions, {made['annotations']} annotations)"
                       + (f" and Local Storage {made['storage']}" if made["storage"] is not None else "")
                       + f": {made['project_url']}")

    emit(as_json, result, human)


@click.command("import-labels")
@click.argument("source", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--group", "groups", multiple=True, metavar="G", help="Only these columns (repeatable).")
@click.option("--prompt-set", "prompt_set_path", default=None, metavar="FILE",
              help="Check groups and values against this prompt set [default: the one the labels came from].")
@click.option("--allow-new-values", is_flag=True,
              help="Import groups and values the prompt set does not know, instead of refusing the file.")
@click.option("--overwrite-newer", is_flag=True,
              help="Import cells whose label changed since the export too (default: skipped as newer_review).")
@click.option("--user", "user", default=None, metavar="NAME",
              help="The reviewer of every value whose file names none. Label Studio's completed_by/annotator "
                   "(and NAME) is matched to a labeler user by name, or by the part of an e-mail before @; a "
                   "name no user has is kept as text.")
@click.option("--label-studio-url", default=None, metavar="URL",
              help="The Label Studio server FILE came from: its exports name annotators by user id, and its "
                   "users give their e-mails.")
@click.option("--token", default=None, metavar="T", envvar="LABEL_STUDIO_API_KEY", show_envvar=True,
              help="With --label-studio-url: a personal access token.")
@json_option
def import_labels(source: Path, groups: tuple[str, ...], prompt_set_path: str | None, allow_new_values: bool,
                  overwrite_newer: bool, user: str | None, label_studio_url: str | None, token: str | None,
                  as_json: bool) -> None:
    """Import reviewed labels from a CSV or a Label Studio JSON (or JSON-MIN) export.

    CSV: a file|path|image_id column (or Label Studio's image URL) plus one column per group; an
    export's GROUP:... columns are read as its status. A value that differs from the model's is
    stored as corrected, else as accepted. Unknown groups or values refuse the file (exit 2)
    unless --allow-new-values; nothing is written then.
    """
    from ..exchange.importing import ImportRefused  # lazy: the import formats only for import-labels

    if label_studio_url is not None and token is None:
        raise LabelerError("--label-studio-url needs --token (or LABEL_STUDIO_API_KEY)")
    try:
        with Progress("importing", None, as_json) as bar:
            report = get_labeler().import_labels(source, groups or None, prompt_set_path, allow_new_values,
                                                 overwrite_newer=overwrite_newer, user=user, progress=bar.update,
                                                 total=bar.set_total,
                                                 label_studio=(label_studio_url, token) if label_studio_url else None)
    except ImportRefused as exc:
        if as_json:
            emit(True, exc.report)  # what was unknown, for a script; the error line still says why
        raise

    emit(as_json, report, _import_human)


def _import_human(d: dict) -> None:
    """import-labels' report for a person: counts, then what was noted or unknown."""
    click.echo(f"imported {d['imported']} labels ({d['accepted']} accepted, {d['corrected']} corrected), "
               f"{d['unchanged']} unchanged, {sum(d['skipped'].values())} skipped, for groups "
               f"{', '.join(d['groups'])} ({d['rows']} rows read)")
    for reason, count in d["skipped"].items():
        click.echo(f"  skipped {count}: {reason}")
    if d["repeated"]:
        first = d["repeated_rows"][0]
        where = f"line {first['line']}" if isinstance(first["line"], int) else first["line"]
        click.echo(f"note: {d['repeated']} {'value repeats' if d['repeated'] == 1 else 'values repeat'} an image "
                   f"and group an earlier line of the file set; the last one stands (first at {where}, "
                   f"{first['group']})", err=True)
    if d["prompt_set"] is None:
        click.echo("warning: values were not checked: the collection has no labels yet (pass --prompt-set)",
                   err=True)
    for group, values in d["unknown_values"].items():
        click.echo(f"warning: {group}: imported values not in the prompt set: {', '.join(values[:10])}", err=True)
    if d["unknown_groups"]:
        click.echo(f"warning: imported groups not in the prompt set: {', '.join(d['unknown_groups'])}", err=True)
    if d["unnamed_annotators"]:
        click.echo(f"note: {d['unnamed_annotators']} values name their Label Studio annotator by id only: "
                   "pass --label-studio-url and --token to name them (else --user is their reviewer)", err=True)
    kept = [name for name, user in d["reviewers"].items() if user is None]
    if kept:
        click.echo(f"note: kept as text (no labeler user has the name): {', '.join(kept[:10])}"
                   + (f" and {len(kept) - 10} more" if len(kept) > 10 else ""), err=True)
    for miss in d["unmatched"][:20]:
        click.echo(f"  line {miss['line']}: no image matches {miss['ref']!r}", err=True)
    if d["unmatched_count"] > 20:
        click.echo(f"  ... and {d['unmatched_count'] - 20} more unmatched rows", err=True)


COMMANDS = [label, evaluate_command, export, import_labels]
