"""Export labels as CSV, JSON lines, COCO or Label Studio tasks, in the shape each client accepts.

Every format keeps the model's answer apart from the reviewer's: ``predicted`` with the model's
confidence in it, then ``value``, ``status`` and ``reviewed_by`` (a user name, or the name of an
imported review's reviewer who is no labeler user). Where a format has
one confidence beside a value (CSV's ``GROUP:confidence``, COCO's ``score``), it is the model's
confidence in that value, so a corrected label never shows the old proposal's confidence.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from sqlalchemy import select

from ..review import duplicate_marks, flags, qa
from ..store.catalog import DECIDED, AcceptRun, Image, Label, User
from ..collection import Collection
from ..files import replace_atomically
from ..core.prompts import PromptSet
from .fiftyone import export_fiftyone
from .huggingface import export_hf
from .records import ExportError, Item, check_target, export_label, group_choices, is_under, labeled_images

FORMATS = ("csv", "jsonl", "coco", "labelstudio", "hf", "fiftyone")
CONCEPT_GROUP = "concept"
# Label Studio serves files under a local storage root at this route (LOCAL_FILES_SERVING_ENABLED).
LOCAL_FILES_PREFIX = "/data/local-files/?d="
# OWASP's CSV injection rule: a spreadsheet reads a cell starting with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class ExportOptions:
    """How a format is written, beyond its defaults.

    ``coco_segmentation``: COCO annotations carry a whole-image polygon (FiftyOne and pycocotools then
    make a full-size mask per image; off by default). ``split_predictions``: COCO's OUT holds the
    reviewed labels as ground truth and ``OUT-stem.predictions.json`` the model's proposals as
    results, for COCOeval. ``formula_guard``: CSV cells a spreadsheet would run get a leading ``'``
    (off for data tools such as pandas and polars, which read the ``'`` as part of the text).
    """

    coco_segmentation: bool = False
    split_predictions: bool = False
    formula_guard: bool = True


def export_labels(collection: Collection, fmt: str, out: Path, groups: Sequence[str] | None = None,
                  concept_group: str = CONCEPT_GROUP, prompt_set: PromptSet | None = None,
                  root: Path | None = None, image_url_prefix: str | None = None, force: bool = False,
                  options: ExportOptions = ExportOptions(), exclude_duplicates: bool = False) -> dict:
    """Write every label in ``fmt``; returns ``{"format", "path", "images", "labels", "duplicates"}``
    (and ``config``, ``predictions``, ``metadata`` where the format writes more than one file).
    ``duplicates``: the images exported marked as a duplicate (each names the image it duplicates:
    ``duplicate_of``), or with ``exclude_duplicates`` (``excluded_duplicates``) how many were left out.

    ``prompt_set`` orders COCO categories, Label Studio choices, JSONL ``score_list`` and Hugging Face
    class labels (default: the one each group's labels came from). ``root``: what COCO file names,
    Label Studio URLs and Hugging Face ``file_name`` are relative to (default: the images' common
    folder). OUT (and any file written beside it) must not exist unless ``force``, and is only ever
    replaced when it is a regular file. ``hf`` writes into the folder OUT: ``metadata.parquet``, ``README.md`` and
    ``dataset_info.json`` (see :mod:`labeler.exchange.huggingface`); ``fiftyone`` writes a dataset folder
    OUT (see :mod:`labeler.exchange.fiftyone`).
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format '{fmt}' (known: {', '.join(FORMATS)})")
    if options.split_predictions and fmt != "coco":
        raise ExportError("--split-predictions applies to --format coco only")
    if fmt in FOLDER_FORMATS:
        return _export_folder(collection, fmt, out, groups, prompt_set, root, force, exclude_duplicates)
    beside = _files_beside(fmt, out, image_url_prefix, options)
    target = check_target(out, force)
    beside_targets = {key: check_target(path, force) for key, path in beside.items()}
    items = list(labeled_images(collection, groups, exclude_duplicates))
    all_groups = sorted({g for item in items for g in item.labels})
    with collection.session() as s:
        reviewers = dict(s.execute(select(User.id, User.name)).all())
        stated = dict(s.execute(select(AcceptRun.id, AcceptRun.lower_bound)).all())
        choices = group_choices(s, all_groups, items, prompt_set)
        marked = image_flags(s, [item.image.id for item in items])
        checked = qa.qa_by_label(s)
    base = common_root(items, root) if fmt in ("coco", "labelstudio") else None
    settings = None
    if fmt == "labelstudio":
        base, settings = label_studio_root(items, root, image_url_prefix)

    data = _ExportData(items, all_groups, reviewers, stated, choices, marked, checked, base)

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            _write_main(fh, fmt, data, concept_group, image_url_prefix, options)

    replace_atomically(target, write)  # a failed export never leaves half a file under the real name
    report = {"format": fmt, "path": str(out), "images": len(items),
              "labels": sum(len(item.labels) for item in items)}
    if exclude_duplicates:
        with collection.session() as s:
            report["excluded_duplicates"] = len(duplicate_marks.marked(s))
    else:
        report["duplicates"] = sum(1 for item in items if item.duplicate_of is not None)
    texts = {}
    if fmt == "labelstudio":
        texts["config"] = labeling_config(choices)
        if settings is not None:
            texts["settings_file"] = label_studio_env(settings, out.name)
            report["settings"] = settings
    if options.split_predictions:
        texts["predictions"] = json.dumps(coco_predictions(items, all_groups, choices, concept_group), indent=1)
    for key, text in texts.items():
        replace_atomically(beside_targets[key], lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
        report[key] = str(beside[key])
    return report if fmt != "jsonl" else {**report, "score_order": choices}  # the order of each score_list


@dataclass
class _ExportData:
    """What one export read from the catalog, for the writer of its format."""

    items: list[Item]
    groups: list[str]
    reviewers: dict[int, str]
    stated: dict[int, float]
    choices: dict[str, list[str]]
    marked: dict[int, list[dict]]
    checked: dict[int, int]
    base: Path | None


def _write_main(fh, fmt: str, d: _ExportData, concept_group: str, image_url_prefix: str | None,
                options: ExportOptions) -> None:
    """OUT's content in ``fmt``, written to the open text file ``fh``."""
    if fmt == "csv":
        _write_csv(fh, d.items, d.groups, d.reviewers, d.marked, d.checked, d.stated, options.formula_guard)
    elif fmt == "jsonl":
        for item in d.items:
            fh.write(json.dumps({"image_id": item.image.id, "path": item.paths[0] if item.paths else None,
                                 "paths": item.paths, "sha256": item.image.sha256,
                                 "labels": {g: _jsonl_label(l, d.reviewers, d.checked, d.stated, d.choices[g])
                                            for g, l in item.labels.items()},
                                 "flags": d.marked.get(item.image.id, []),
                                 "duplicate_of": item.duplicate_of}) + "\n")
    elif fmt == "coco" and options.split_predictions:
        json.dump(coco_truth(d.items, d.groups, d.choices, d.base, concept_group, options), fh, indent=1)
    elif fmt == "coco":
        json.dump(coco(d.items, d.groups, d.choices, d.base, d.reviewers, concept_group, d.stated, options),
                  fh, indent=1)
    else:
        prefix = LOCAL_FILES_PREFIX if image_url_prefix is None else image_url_prefix
        json.dump(label_studio(d.items, d.base, prefix, d.reviewers, d.stated), fh, indent=1)


def _files_beside(fmt: str, out: Path, image_url_prefix: str | None, options: ExportOptions) -> dict[str, Path]:
    """The files a format writes beside OUT, by their key in the report: Label Studio's labeling
    config and (serving local files) its settings, COCO's results file with ``split_predictions``."""
    beside = {}
    if fmt == "labelstudio":
        beside["config"] = out.with_name(out.stem + ".labeling-config.xml")
        if image_url_prefix is None:
            beside["settings_file"] = out.with_name(out.stem + ".label-studio.env")
    if options.split_predictions:
        beside["predictions"] = out.with_name(out.stem + ".predictions.json")
    return beside


def _jsonl_label(label: Label, reviewers: dict[int, str], checked: dict[int, int], stated: dict[int, float],
                 order: list[str]) -> dict:
    """A JSONL label: :func:`export_label`, plus ``score_list``, the model's confidence in each of the
    group's values in one fixed order (the prompt set's, as the report's ``score_order`` lists), so
    data tools get the same columns whatever option names a prompt set uses; None where not scored."""
    data = export_label(label, reviewers, checked, stated)
    data["score_list"] = [(data["scores"].get(value) or {}).get("confidence") for value in order]
    return data


FOLDER_FORMATS = ("hf", "fiftyone")  # written as several files into a folder, each by its own module


def _export_folder(collection: Collection, fmt: str, out: Path, groups: Sequence[str] | None,
                   prompt_set: PromptSet | None, root: Path | None, force: bool, exclude_duplicates: bool) -> dict:
    if fmt == "hf":
        return export_hf(collection, out, groups, prompt_set, root, force, exclude_duplicates)
    return export_fiftyone(collection, out, groups, prompt_set, force, exclude_duplicates)


def neutralise(cell: object) -> object:
    """A text cell a spreadsheet would run as a formula gets a leading ``'`` (OWASP); others pass."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


def common_root(items: Sequence[Item], root: Path | None) -> Path:
    """The folder paths are made relative to: ``root``, else the folder common to every image path."""
    paths = [p for item in items for p in item.paths]
    if root is not None:
        root = Path(os.path.abspath(root))
        outside = next((p for p in paths if not is_under(p, root)), None)
        if outside is not None:
            raise ExportError(f"{outside} is not under --root {root}; give a --root that holds every image")
        return root
    if not paths:
        return Path("/")
    return Path(os.path.commonpath([os.path.dirname(p) for p in paths]))


def image_flags(session, image_ids: Sequence[int]) -> dict[int, list[dict]]:
    """Each image's flags as exports show them: ``{"name", "group" (None: the image), "note", "user"}``."""
    out: dict[int, list[dict]] = {}
    for start in range(0, len(image_ids), 500):
        for image_id, entries in flags.of_images(session, image_ids[start:start + 500]).items():
            out[image_id] = [{k: f[k] for k in ("name", "group", "note", "user")} for f in entries]
    return out


def _flag_cell(entries: list[dict]) -> str:
    """``name [group]: note`` per flag, ``|``-separated (the image's own flags have no group)."""
    return "|".join(f["name"] + (f" [{f['group']}]" if f["group"] else "") + (f": {f['note']}" if f["note"] else "")
                    for f in entries)


def _write_csv(fh, items: Sequence[Item], groups: list[str], reviewers: dict[int, str],
               marked: dict[int, list[dict]] | None = None, checked: dict[int, int] | None = None,
               stated: dict[int, float] | None = None, formula_guard: bool = True) -> None:
    """Columns: image_id, path, each group's value, then per group ``GROUP:KEY`` for every key in
    ``CSV_KEYS``, then ``paths`` (every path of the image, ``|``-separated) and ``image:flags``
    (its flags and notes; import-labels reads no column with a colon as a group), then
    ``image:duplicate_of`` (the image it was marked a duplicate of). Cells are neutralised unless
    ``formula_guard`` is off."""
    marked = marked or {}
    writer = csv.writer(fh)
    writer.writerow(["image_id", "path", *groups, *[f"{g}:{k}" for g in groups for k in CSV_KEYS], "paths",
                     "image:flags", "image:duplicate_of"])
    for item in items:
        values = [item.labels[g].value if g in item.labels and item.labels[g].value is not None else ""
                  for g in groups]
        extra: list[object] = []
        for g in groups:
            label = item.labels.get(g)
            if label is None:
                extra += [""] * len(CSV_KEYS)
                continue
            data = export_label(label, reviewers, checked, stated)
            extra += ["" if data[k] is None else round(data[k], 6) if isinstance(data[k], float) else data[k]
                      for k in CSV_KEYS]
        row = [item.image.id, item.paths[0] if item.paths else "", *values, *extra, "|".join(item.paths),
               _flag_cell(marked.get(item.image.id, [])), "" if item.duplicate_of is None else item.duplicate_of]
        writer.writerow([neutralise(cell) for cell in row] if formula_guard else row)


# version: import-labels skips a cell whose label has changed since (see importing.NEWER_REVIEW)
CSV_KEYS = ("confidence", "status", "predicted", "predicted_confidence", "reviewed_by", "version", "qa_by",
            "stated_precision")


def coco_categories(groups: list[str], choices: dict[str, list[str]], concept_group: str
                    ) -> tuple[list[str], dict[tuple[str, str], int]]:
    """The groups that give COCO categories (the concept group, else all) and each (group, value)'s
    category id, in the prompt set's option order, so one prompt set always gives the same ids."""
    category_groups = [concept_group] if concept_group in groups else groups
    categories: dict[tuple[str, str], int] = {}
    for g in category_groups:
        for value in choices.get(g, []):
            categories[(g, value)] = len(categories) + 1
    return category_groups, categories


def _coco_image(item: Item, root: Path) -> dict:
    image = item.image
    return {"id": image.id, "file_name": os.path.relpath(item.paths[0], root) if item.paths else None,
            "width": image.width, "height": image.height, "path": item.paths[0] if item.paths else None,
            "paths": item.paths, "duplicate_of": item.duplicate_of}


def _coco_categories_list(categories: dict[tuple[str, str], int], several: bool) -> list[dict]:
    return [{"id": i, "name": f"{g}:{v}" if several else v, "supercategory": g} for (g, v), i in categories.items()]


def _whole_image(image: Image, segmentation: bool) -> dict:
    """A whole-image region: its box, area and crowd flag (and polygon when asked for)."""
    w, h = image.width, image.height
    region = {"bbox": [0, 0, w, h], "area": w * h, "iscrowd": 0}
    if segmentation:
        region["segmentation"] = [[0, 0, w, 0, w, h, 0, h]]
    return region


def _coco_info() -> dict:
    return {"description": "labeler export", "date_created": datetime.now(timezone.utc).isoformat()}


def coco(items: Sequence[Item], groups: list[str], choices: dict[str, list[str]], root: Path,
         reviewers: dict[int, str], concept_group: str = CONCEPT_GROUP, stated: dict[int, float] | None = None,
         options: ExportOptions = ExportOptions()) -> dict:
    """COCO with image-level categories: one whole-image box per image for its concept, other groups
    as attributes. Without a concept group every group gives categories, named ``group:value``.

    Category ids follow the prompt set's option order, so one prompt set always gives the same ids.
    No ``segmentation`` unless ``options.coco_segmentation``: a whole-image polygon made FiftyOne
    require pycocotools and build a full-size mask per image.
    """
    category_groups, categories = coco_categories(groups, choices, concept_group)
    images, annotations = [], []
    for item in items:
        image, labels = item.image, item.labels
        images.append(_coco_image(item, root))
        attributes = {g: l.value for g, l in labels.items() if g not in category_groups}
        for g in category_groups:
            label = labels.get(g)
            if label is None or label.value is None:
                continue
            annotation = {"id": len(annotations) + 1, "image_id": image.id,
                          "category_id": categories[(g, label.value)],
                          **_whole_image(image, options.coco_segmentation), "attributes": attributes}
            data = export_label(label, reviewers, stated=stated)
            if data["confidence"] is not None:
                annotation["score"] = data["confidence"]
            annotation.update({k: data[k] for k in ("group", "value", "status", "reviewed_by", "predicted",
                                                     "predicted_confidence", "stated_precision")})
            annotations.append(annotation)
    return {"info": _coco_info(), "licenses": [], "images": images, "annotations": annotations,
            "categories": _coco_categories_list(categories, len(category_groups) > 1)}


def _reviewed(label: Label | None) -> bool:
    return label is not None and label.status in DECIDED and label.value is not None


def coco_truth(items: Sequence[Item], groups: list[str], choices: dict[str, list[str]], root: Path,
               concept_group: str = CONCEPT_GROUP, options: ExportOptions = ExportOptions()) -> dict:
    """COCO ground truth for COCOeval: the images with a reviewed (accepted or corrected) label in a
    category group, and that label as a whole-image box. :func:`coco_predictions` is the results file."""
    category_groups, categories = coco_categories(groups, choices, concept_group)
    images, annotations = [], []
    for item in items:
        reviewed = [item.labels[g] for g in category_groups if _reviewed(item.labels.get(g))]
        if not reviewed:
            continue
        images.append(_coco_image(item, root))
        for label in reviewed:
            annotations.append({"id": len(annotations) + 1, "image_id": item.image.id,
                                "category_id": categories[(label.group, label.value)],
                                **_whole_image(item.image, options.coco_segmentation),
                                "group": label.group, "value": label.value, "status": label.status})
    return {"info": _coco_info(), "licenses": [], "images": images, "annotations": annotations,
            "categories": _coco_categories_list(categories, len(category_groups) > 1)}


def coco_predictions(items: Sequence[Item], groups: list[str], choices: dict[str, list[str]],
                     concept_group: str = CONCEPT_GROUP) -> list[dict]:
    """COCO results (``COCO.loadRes``): the model's proposal for every reviewed label of
    :func:`coco_truth`, a whole-image box scored with the model's confidence. A proposal of none of
    the options has no box: COCOeval counts the reviewed value as missed, as ``evaluate`` does."""
    category_groups, categories = coco_categories(groups, choices, concept_group)
    results = []
    for item in items:
        for g in category_groups:
            label = item.labels.get(g)
            if not _reviewed(label) or label.predicted is None:
                continue
            results.append({"image_id": item.image.id, "category_id": categories[(g, label.predicted)],
                            "bbox": [0, 0, item.image.width, item.image.height],
                            "score": label.confidence if label.confidence is not None else 1.0})
    return results


def label_studio(items: Sequence[Item], root: Path, url_prefix: str, reviewers: dict[int, str],
                 stated: dict[int, float] | None = None) -> list[dict]:
    """Label Studio tasks: the model's labels as ``predictions``, reviewed ones as ``annotations``.

    ``data.image`` is ``url_prefix`` + the path relative to ``root`` (URL-quoted);
    ``data.image_id`` and ``data.path`` let ``import-labels`` find the image again; ``data.labeler``
    says per group who decided what (Label Studio keeps task data as it is).
    """
    def result(group: str, value: str, score: float | None = None) -> dict:
        region = {"from_name": group, "to_name": "image", "type": "choices", "value": {"choices": [value]}}
        if score is not None:
            region["score"] = score
        return region

    tasks = []
    for item in items:
        image, labels = item.image, item.labels
        predicted = [result(g, l.predicted, l.confidence) for g, l in labels.items() if l.predicted is not None]
        # an auto label is the model's, accepted at a stated precision: a prediction, not an annotation
        reviewed = {g: l for g, l in labels.items() if l.status not in ("proposed", "auto") and l.value is not None}
        scores = [l.confidence for l in labels.values() if l.confidence is not None]
        strategies = sorted({l.strategy for l in labels.values() if l.strategy})
        path = item.paths[0] if item.paths else ""
        provenance = {g: {k: v for k, v in export_label(l, reviewers, stated=stated).items() if k in PROVENANCE}
                      for g, l in labels.items()}
        task = {"id": image.id,
                "data": {"image": url_prefix + quote(os.path.relpath(path, root)), "image_id": image.id,
                         "path": path, "labeler": provenance, "duplicate_of": item.duplicate_of},
                "predictions": [{"model_version": "labeler:" + ",".join(strategies),
                                 "score": sum(scores) / len(scores) if scores else None, "result": predicted}]}
        if reviewed:
            # an id: Label Studio keeps it as the annotation's import_id, which tells import-labels
            # that the annotation is ours (its completed_by is then whoever imported it, not a reviewer)
            task["annotations"] = [{"id": image.id, "result": [result(g, l.value) for g, l in reviewed.items()]}]
        tasks.append(task)
    return tasks


def label_studio_root(items: Sequence[Item], root: Path | None, url_prefix: str | None
                      ) -> tuple[Path, dict | None]:
    """What Label Studio task URLs are relative to, and the settings that make it serve them.

    Label Studio serves ``/data/local-files/?d=REL`` only from a Local Storage inside
    ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``, and refuses a storage at the document root itself; so
    the default root is the parent of the images' folder, and the storage is that folder. With
    another ``url_prefix`` the images are served elsewhere: no settings.
    """
    images = common_root(items, None)
    base = common_root(items, root) if root is not None else (images.parent if images != images.parent else images)
    if url_prefix is not None or not any(item.paths for item in items):
        return base, None
    if images == base:
        raise ExportError(f"Label Studio refuses a Local Storage at its document root {base}: give --root a "
                          f"folder above the images' folder (its parent {base.parent}, the default)")
    return base, {"LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
                  "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(base),
                  "local_storage_path": str(images), "root": str(base)}


def label_studio_env(settings: dict, tasks_name: str) -> str:
    """The settings file written beside a Label Studio export: shell lines, and the storage to add."""
    return (f"# Label Studio settings for {tasks_name} (labeler export --format labelstudio --root {settings['root']})\n"
            "# Start Label Studio with these in its environment:\n"
            f"export LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED={settings['LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED']}\n"
            f"export LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={quote_shell(settings['LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT'])}\n"
            "# Then in the project: Settings > Cloud Storage > Add Source Storage > Local files,\n"
            f"# Absolute local path: {settings['local_storage_path']}\n"
            f"LABELER_LOCAL_STORAGE_PATH={quote_shell(settings['local_storage_path'])}\n")


def quote_shell(text: str) -> str:
    import shlex

    return shlex.quote(text)


PROVENANCE = ("value", "status", "reviewed_by", "predicted", "predicted_confidence", "stated_precision")
# Keys of our task data: import-labels never reads these columns of the converter's CSV as groups.
TASK_DATA_KEYS = ("image", "image_id", "path", "labeler", "duplicate_of")


def labeling_config(choices: dict[str, list[str]]) -> str:
    """Label Studio's labeling config for these tasks: the image, and one single ``<Choices>`` per group."""
    lines = ["<View>", '  <Image name="image" value="$image"/>']
    for group, values in choices.items():
        lines.append(f'  <Header value={quoteattr(group)}/>')
        lines.append(f'  <Choices name={quoteattr(group)} toName="image" choice="single" showInline="true">')
        lines += [f"    <Choice value={quoteattr(v)}/>" for v in values]
        lines.append("  </Choices>")
    lines.append("</View>")
    return "\n".join(lines) + "\n"
