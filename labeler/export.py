"""Export labels (CSV, JSON lines, COCO, Label Studio) and import reviewed labels from a CSV."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from . import present, review
from .catalog import Image, Label
from .collection import Collection
from .csvfiles import ID_COLUMNS, match_rows, read_csv
from .errors import LabelerError
from .files import replace_atomically

FORMATS = ("csv", "jsonl", "coco", "labelstudio")
CONCEPT_GROUP = "concept"


def labeled_images(collection: Collection, groups: Sequence[str] | None = None
                   ) -> Iterator[tuple[Image, dict[str, Label]]]:
    """Every image with at least one label, in id order, with its labels by group."""
    with collection.session() as s:
        query = select(Label).order_by(Label.image_id, Label.group)
        if groups:
            query = query.where(Label.group.in_(list(groups)))
        by_image: dict[int, dict[str, Label]] = defaultdict(dict)
        for label in s.scalars(query):
            by_image[label.image_id][label.group] = label
        images = {}
        ids = list(by_image)
        for start in range(0, len(ids), 500):
            # selectinload: the files of 500 images in one query, not one query per image
            for image in s.scalars(select(Image).options(selectinload(Image.files))
                                   .where(Image.id.in_(ids[start:start + 500]))):
                images[image.id] = image
        for image_id in ids:
            yield images[image_id], by_image[image_id]


def export_labels(collection: Collection, fmt: str, out: Path, groups: Sequence[str] | None = None,
                  concept_group: str = CONCEPT_GROUP) -> dict:
    """Write every label in ``fmt``; returns ``{"format", "path", "images", "labels"}``."""
    if fmt not in FORMATS:
        raise LabelerError(f"unknown format '{fmt}' (known: {', '.join(FORMATS)})")
    items = list(labeled_images(collection, groups))
    all_groups = sorted({g for _, labels in items for g in labels})

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            if fmt == "csv":
                _write_csv(fh, items, all_groups)
            elif fmt == "jsonl":
                for image, labels in items:
                    fh.write(json.dumps({"image_id": image.id, "path": image.path, "sha256": image.sha256,
                                         "labels": {g: present.label_dict(l) for g, l in labels.items()}}) + "\n")
            elif fmt == "coco":
                json.dump(coco(items, all_groups, concept_group), fh, indent=1)
            else:
                json.dump(label_studio(items), fh, indent=1)

    replace_atomically(out, write)  # a failed export never leaves half a file under the real name
    return {"format": fmt, "path": str(out), "images": len(items),
            "labels": sum(len(labels) for _, labels in items)}


def _write_csv(fh, items, groups: list[str]) -> None:
    """Columns: image_id, path, then per group its value, ``GROUP:confidence`` and ``GROUP:status``."""
    writer = csv.writer(fh)
    writer.writerow(["image_id", "path", *groups, *[f"{g}:{k}" for g in groups for k in ("confidence", "status")]])
    for image, labels in items:
        values = [labels[g].value if g in labels and labels[g].value is not None else "" for g in groups]
        extra = []
        for g in groups:
            label = labels.get(g)
            extra += ["" if label is None or label.confidence is None else round(label.confidence, 6),
                      "" if label is None else label.status]
        writer.writerow([image.id, image.path or "", *values, *extra])


def coco(items, groups: list[str], concept_group: str = CONCEPT_GROUP) -> dict:
    """COCO with image-level categories: one annotation per image for its concept, other groups as attributes.

    Without a concept group, every group's value becomes a category (supercategory = group).
    """
    category_groups = [concept_group] if concept_group in groups else groups
    categories: dict[tuple[str, str], int] = {}
    for _, labels in items:
        for g in category_groups:
            if g in labels and labels[g].value is not None:
                categories.setdefault((g, labels[g].value), len(categories) + 1)
    images, annotations = [], []
    for image, labels in items:
        images.append({"id": image.id, "file_name": image.path, "width": image.width, "height": image.height})
        attributes = {g: l.value for g, l in labels.items() if g not in category_groups}
        for g in category_groups:
            label = labels.get(g)
            if label is None or label.value is None:
                continue
            annotations.append({"id": len(annotations) + 1, "image_id": image.id,
                                "category_id": categories[(g, label.value)], "score": label.confidence,
                                "status": label.status, "attributes": attributes})
    return {"info": {"description": "labeler export", "date_created": datetime.now(timezone.utc).isoformat()},
            "images": images, "annotations": annotations,
            "categories": [{"id": i, "name": v, "supercategory": g} for (g, v), i in categories.items()]}


def label_studio(items) -> list[dict]:
    """Label Studio tasks: the model's labels as predictions, reviewed labels also as annotations."""
    def result(group: str, value: str, score: float | None) -> dict:
        return {"from_name": group, "to_name": "image", "type": "choices",
                "value": {"choices": [value]}, "score": score}

    tasks = []
    for image, labels in items:
        predicted = [result(g, l.predicted, l.confidence) for g, l in labels.items() if l.predicted is not None]
        reviewed = [result(g, l.value, None) for g, l in labels.items() if l.reviewed and l.value is not None]
        scores = [l.confidence for l in labels.values() if l.confidence is not None]
        strategies = sorted({l.strategy for l in labels.values() if l.strategy})
        task = {"id": image.id, "data": {"image": image.path},
                "predictions": [{"model_version": "labeler:" + ",".join(strategies),
                                 "score": sum(scores) / len(scores) if scores else None, "result": predicted}]}
        if reviewed:
            task["annotations"] = [{"result": reviewed}]
        tasks.append(task)
    return tasks


def import_labels(collection: Collection, csv_path: Path, groups: Sequence[str] | None = None,
                  user_id: int | None = None) -> dict:
    """Write each CSV row's group columns as accepted labels, with an ``import`` review event.

    Columns: ``file``, ``path`` or ``image_id``, then one column per group (columns with ``:`` are
    ignored, so a CSV export reads back; its still-proposed values are skipped, never accepted). Rows that match no image are reported, not fatal; a value
    already accepted is left alone, so a rerun changes nothing.
    """
    rows = read_csv(csv_path)
    columns = [c for c in (rows[0].keys() if rows else []) if c not in ID_COLUMNS and ":" not in c]
    if groups:
        unknown = [g for g in groups if g not in columns]
        if unknown:
            raise LabelerError(f"{csv_path}: no column for group(s) {', '.join(unknown)}")
        columns = list(groups)
    if not columns:
        raise LabelerError(f"{csv_path}: no group columns to import")
    ids = match_rows(collection, csv_path, rows)
    report = {"imported": 0, "unchanged": 0, "unmatched": [], "groups": columns}
    with collection.session() as s:
        for line, (row, image_id) in enumerate(zip(rows, ids), start=2):
            if image_id is None:
                report["unmatched"].append({"line": line, "ref": row.get("image_id") or row.get("path")
                                            or row.get("file") or ""})
                continue
            existing = {l.group: l for l in s.scalars(select(Label).where(Label.image_id == image_id,
                                                                          Label.group.in_(columns)))}
            for group in columns:
                value = (row.get(group) or "").strip()
                if not value or (row.get(f"{group}:status") or "").strip() == "proposed":
                    continue
                label = existing.get(group)
                if label is not None and label.value == value and label.status in ("accepted", "corrected"):
                    report["unchanged"] += 1
                    continue
                if label is None:
                    label = Label(image_id=image_id, group=group)
                review.record_import(s, label, value, user_id)
                report["imported"] += 1
    return report
