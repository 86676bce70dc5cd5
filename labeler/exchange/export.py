"""Export labels as CSV, JSON lines, COCO or Label Studio tasks, in the shape each client accepts.

Every format keeps the model's answer apart from the reviewer's: ``predicted`` with the model's
confidence in it, then ``value``, ``status`` and ``reviewed_by`` (a user name). Where a format has
one confidence beside a value (CSV's ``GROUP:confidence``, COCO's ``score``), it is the model's
confidence in that value, so a corrected label never shows the old proposal's confidence.
"""

from __future__ import annotations

import csv
import json
import os
import stat
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..review import duplicate_marks, flags, present, qa
from ..store.catalog import AcceptRun, Image, Label, User
from ..collection import Collection
from ..errors import LabelerError
from ..files import replace_atomically
from ..core.prompts import PromptSet

FORMATS = ("csv", "jsonl", "coco", "labelstudio")
CONCEPT_GROUP = "concept"
# Label Studio serves files under a local storage root at this route (LOCAL_FILES_SERVING_ENABLED).
LOCAL_FILES_PREFIX = "/data/local-files/?d="
# OWASP's CSV injection rule: a spreadsheet reads a cell starting with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ExportError(LabelerError):
    """An export that cannot be written as asked (OUT exists, is not a regular file, ...)."""


@dataclass
class Item:
    """One exported image: its row, every path it has (duplicates too) and its labels by group."""

    image: Image
    paths: list[str]
    labels: dict[str, Label] = field(default_factory=dict)
    duplicate_of: int | None = None  # the image it was marked a duplicate of (issue 26)


def labeled_images(collection: Collection, groups: Sequence[str] | None = None,
                   exclude_duplicates: bool = False) -> Iterator[Item]:
    """Every image with at least one label, in id order, with its labels by group and the image it
    was marked a duplicate of; ``exclude_duplicates`` leaves marked duplicates out."""
    with collection.session() as s:
        marks = duplicate_marks.marked(s)
        # the prompt sets name the stored scores' options; loaded now, as the labels are read after
        query = select(Label).options(selectinload(Label.prompt_set)).order_by(Label.image_id, Label.group)
        if groups:
            query = query.where(Label.group.in_(list(groups)))
        by_image: dict[int, dict[str, Label]] = defaultdict(dict)
        for label in s.scalars(query):
            if exclude_duplicates and label.image_id in marks:
                continue
            by_image[label.image_id][label.group] = label
        images = {}
        ids = list(by_image)
        for start in range(0, len(ids), 500):
            # selectinload: the files of 500 images in one query, not one query per image
            for image in s.scalars(select(Image).options(selectinload(Image.files))
                                   .where(Image.id.in_(ids[start:start + 500]))):
                images[image.id] = image
        for image_id in ids:
            image = images[image_id]
            present_first = sorted(image.files, key=lambda f: (f.status != "ok", f.id))
            yield Item(image, [f.path for f in present_first], by_image[image_id], marks.get(image_id))


def export_labels(collection: Collection, fmt: str, out: Path, groups: Sequence[str] | None = None,
                  concept_group: str = CONCEPT_GROUP, prompt_set: PromptSet | None = None,
                  root: Path | None = None, image_url_prefix: str | None = None, force: bool = False,
                  exclude_duplicates: bool = False) -> dict:
    """Write every label in ``fmt``; returns ``{"format", "path", "images", "labels", "duplicates"}``
    (and ``config``). ``duplicates``: the images exported marked as a duplicate (each names the
    image it duplicates: ``duplicate_of``), or with ``exclude_duplicates`` how many were left out.

    ``prompt_set`` orders COCO categories and Label Studio choices (default: the one each group's
    labels came from). ``root``: what COCO file names and Label Studio URLs are relative to (default:
    the images' common folder). OUT (and Label Studio's config beside it) must not exist unless
    ``force``, and is only ever replaced when it is a regular file.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format '{fmt}' (known: {', '.join(FORMATS)})")
    config_path = out.with_name(out.stem + ".labeling-config.xml") if fmt == "labelstudio" else None
    targets = [check_target(path, force) for path in (out, config_path) if path is not None]
    items = list(labeled_images(collection, groups, exclude_duplicates))
    all_groups = sorted({g for item in items for g in item.labels})
    with collection.session() as s:
        reviewers = dict(s.execute(select(User.id, User.name)).all())
        stated = dict(s.execute(select(AcceptRun.id, AcceptRun.lower_bound)).all())
        choices = group_choices(s, all_groups, items, prompt_set)
        marked = image_flags(s, [item.image.id for item in items])
        checked = qa.qa_by_label(s)
    base = common_root(items, root) if fmt in ("coco", "labelstudio") else None

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            if fmt == "csv":
                _write_csv(fh, items, all_groups, reviewers, marked, checked, stated)
            elif fmt == "jsonl":
                for item in items:
                    fh.write(json.dumps({"image_id": item.image.id, "path": item.paths[0] if item.paths else None,
                                         "paths": item.paths, "sha256": item.image.sha256,
                                         "labels": {g: export_label(l, reviewers, checked, stated)
                                                    for g, l in item.labels.items()},
                                         "flags": marked.get(item.image.id, []),
                                         "duplicate_of": item.duplicate_of}) + "\n")
            elif fmt == "coco":
                json.dump(coco(items, all_groups, choices, base, reviewers, concept_group, stated), fh, indent=1)
            else:
                prefix = LOCAL_FILES_PREFIX if image_url_prefix is None else image_url_prefix
                json.dump(label_studio(items, base, prefix, reviewers, stated), fh, indent=1)

    replace_atomically(targets[0], write)  # a failed export never leaves half a file under the real name
    report = {"format": fmt, "path": str(out), "images": len(items),
              "labels": sum(len(item.labels) for item in items)}
    if exclude_duplicates:
        with collection.session() as s:
            report["excluded_duplicates"] = len(duplicate_marks.marked(s))
    else:
        report["duplicates"] = sum(1 for item in items if item.duplicate_of is not None)
    if config_path is not None:
        xml = labeling_config(choices)
        replace_atomically(targets[1], lambda tmp: tmp.write_text(xml, encoding="utf-8"))
        report["config"] = str(config_path)
    return report


def check_target(path: Path, force: bool) -> Path:
    """Where to write ``path``: refuses an existing one unless ``force``, and anything not a regular file.

    A symlink to a regular file is followed (the link stays, its target is replaced); a device
    node, folder, socket or pipe (or a link to one) is never written.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise ExportError(f"{path} is a dangling symlink; remove it or choose another name") from None
        return Path(path)
    except OSError:
        return Path(path)  # an unusable folder: the write says why
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise ExportError(f"{path} is {kind}; export writes only regular files")
    if not force:
        raise ExportError(f"{path} exists; pass --force to replace it")
    return Path(os.path.realpath(path))


def export_label(label: Label, reviewers: dict[int, str], qa_by: dict[int, int] | None = None,
                 stated: dict[int, float] | None = None) -> dict:
    """A label as exports show it: its dict, with ``confidence`` the model's in ``value``, the reviewer
    and who QA'd it (``qa_by``: label id → user id, from ``qa.qa_by_label``) by name.

    ``stated_precision``: for an ``auto`` label, the stated precision of the accept run that made it
    (``stated``: run id → its lower bound), so downstream users can filter by it; else None.
    """
    run = label.accept_run_id if label.status == "auto" else None
    return {**present.label_dict(label), "confidence": present.model_confidence(label, label.value),
            "predicted_confidence": label.confidence, "reviewed_by": reviewers.get(label.reviewed_by),
            "qa_by": reviewers.get((qa_by or {}).get(label.id)),
            "stated_precision": (stated or {}).get(run) if run is not None else None}


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
        outside = next((p for p in paths if not _is_under(p, root)), None)
        if outside is not None:
            raise ExportError(f"{outside} is not under --root {root}; give a --root that holds every image")
        return root
    if not paths:
        return Path("/")
    return Path(os.path.commonpath([os.path.dirname(p) for p in paths]))


def _is_under(path: str, root: Path) -> bool:
    try:
        return os.path.commonpath([path, str(root)]) == str(root)
    except ValueError:
        return False


def group_choices(session, groups: Sequence[str], items: Sequence[Item],
                  prompt_set: PromptSet | None) -> dict[str, list[str]]:
    """Each group's values in a stable order: the prompt set's options (and its none answer), then
    any other value in the export (corrections outside the prompt set), sorted."""
    from ..labeling.learning import prompt_set_of_labels

    out: dict[str, list[str]] = {}
    for group in groups:
        source = prompt_set if prompt_set is not None and group in prompt_set.groups else None
        if source is None:
            source = prompt_set_of_labels(session, group)
        values: list[str] = []
        if source is not None and group in source.groups:
            spec = source.groups[group]
            values = spec.option_names + ([spec.none_name] if spec.none_name else [])
        seen = set(values)
        extra = {v for item in items if group in item.labels
                 for v in (item.labels[group].value, item.labels[group].predicted) if v is not None}
        out[group] = values + sorted(extra - seen)
    return out


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
               stated: dict[int, float] | None = None) -> None:
    """Columns: image_id, path, each group's value, then per group ``GROUP:KEY`` for every key in
    ``CSV_KEYS``, then ``paths`` (every path of the image, ``|``-separated) and ``image:flags``
    (its flags and notes; import-labels reads no column with a colon as a group), then
    ``image:duplicate_of`` (the image it was marked a duplicate of). Cells are neutralised."""
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
        writer.writerow([neutralise(cell) for cell in row])


# version: import-labels skips a cell whose label has changed since (see importing.NEWER_REVIEW)
CSV_KEYS = ("confidence", "status", "predicted", "predicted_confidence", "reviewed_by", "version", "qa_by",
            "stated_precision")


def coco(items: Sequence[Item], groups: list[str], choices: dict[str, list[str]], root: Path,
         reviewers: dict[int, str], concept_group: str = CONCEPT_GROUP, stated: dict[int, float] | None = None) -> dict:
    """COCO with image-level categories: one whole-image box per image for its concept, other groups
    as attributes. Without a concept group every group gives categories, named ``group:value``.

    Category ids follow the prompt set's option order, so one prompt set always gives the same ids.
    """
    category_groups = [concept_group] if concept_group in groups else groups
    several = len(category_groups) > 1
    categories: dict[tuple[str, str], int] = {}
    for g in category_groups:
        for value in choices.get(g, []):
            categories[(g, value)] = len(categories) + 1
    images, annotations = [], []
    for item in items:
        image, labels = item.image, item.labels
        w, h = image.width, image.height
        images.append({"id": image.id, "file_name": os.path.relpath(item.paths[0], root) if item.paths else None,
                       "width": w, "height": h, "path": item.paths[0] if item.paths else None, "paths": item.paths,
                       "duplicate_of": item.duplicate_of})
        attributes = {g: l.value for g, l in labels.items() if g not in category_groups}
        for g in category_groups:
            label = labels.get(g)
            if label is None or label.value is None:
                continue
            annotation = {"id": len(annotations) + 1, "image_id": image.id,
                          "category_id": categories[(g, label.value)],
                          "bbox": [0, 0, w, h], "area": w * h, "iscrowd": 0,
                          "segmentation": [[0, 0, w, 0, w, h, 0, h]], "attributes": attributes}
            data = export_label(label, reviewers, stated=stated)
            if data["confidence"] is not None:
                annotation["score"] = data["confidence"]
            annotation.update({k: data[k] for k in ("group", "value", "status", "reviewed_by", "predicted",
                                                     "predicted_confidence", "stated_precision")})
            annotations.append(annotation)
    return {"info": {"description": "labeler export", "date_created": datetime.now(timezone.utc).isoformat()},
            "licenses": [], "images": images, "annotations": annotations,
            "categories": [{"id": i, "name": f"{g}:{v}" if several else v, "supercategory": g}
                           for (g, v), i in categories.items()]}


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
            task["annotations"] = [{"result": [result(g, l.value) for g, l in reviewed.items()]}]
        tasks.append(task)
    return tasks


PROVENANCE = ("value", "status", "reviewed_by", "predicted", "predicted_confidence", "stated_precision")
# Keys of our task data: import-labels never reads these columns of the converter's CSV as groups.
TASK_DATA_KEYS = ("image", "image_id", "path", "labeler")


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
