"""The FiftyOne export: FiftyOne's image-classification layout (``FiftyOneImageClassificationDataset``),
images left where they are through a ``data.json`` manifest.

Into the folder OUT go:

- ``data.json``: the manifest, ``{"<image id>": "/absolute/path"}``;
- ``labels.json``: per image a list with one classification per group (FiftyOne reads a list as a
  ``Classifications``): ``label`` the current value (a reviewer's, else the model's), ``confidence``
  the model's in it, and as attributes ``group``, ``status``, ``predicted``, ``predicted_confidence``
  and ``reviewed_by``;
- ``fields/GROUP.json`` and ``fields/GROUP_predicted.json``: the same layout with one
  ``Classification`` per image, the current value and the model's proposal apart, each with its
  confidence and ``classes`` in the prompt set's order; ``Dataset.merge_dir`` adds each as a field,
  which is what ``evaluate_classifications`` compares.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from sqlalchemy import select

from ..collection import Collection
from ..core.prompts import PromptSet
from ..files import replace_atomically
from ..store.catalog import DECIDED, User
from .records import ExportError, check_target, export_label, group_choices, labeled_images

ATTRIBUTES = ("status", "predicted", "predicted_confidence", "reviewed_by")


def export_fiftyone(collection: Collection, out: Path, groups: Sequence[str] | None, prompt_set: PromptSet | None,
                    force: bool, exclude_duplicates: bool = False) -> dict:
    """Write the manifest and the labels into the folder ``out`` (made if missing); returns the
    export report with ``manifest``, ``labels`` (the file) and ``fields`` (group field → file)."""
    folder = Path(os.path.abspath(out))
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"{out} is not a folder: --format fiftyone writes a dataset folder")
    items = [item for item in labeled_images(collection, groups, exclude_duplicates) if item.paths]
    all_groups = sorted({g for item in items for g in item.labels})
    with collection.session() as s:
        reviewers = dict(s.execute(select(User.id, User.name)).all())
        choices = group_choices(s, all_groups, items, prompt_set)
    files: dict[str, object] = {"data.json": {str(item.image.id): item.paths[0] for item in items}}
    combined: dict[str, list[dict]] = {}
    fields: dict[str, dict] = {}
    for group in all_groups:
        fields[group] = {"classes": choices[group], "labels": {}}
        fields[f"{group}_predicted"] = {"classes": choices[group], "labels": {}}
    for item in items:
        key = str(item.image.id)
        for group, label in sorted(item.labels.items()):
            data = export_label(label, reviewers)
            attributes = {"group": group, **{k: data[k] for k in ATTRIBUTES},
                          "reviewed": label.status in DECIDED}
            if data["value"] is not None:
                combined.setdefault(key, []).append(
                    {"label": data["value"], "confidence": data["confidence"], "attributes": attributes})
                fields[group]["labels"][key] = {"label": data["value"], "confidence": data["confidence"],
                                                "attributes": {k: v for k, v in attributes.items() if k != "group"}}
            if data["predicted"] is not None:
                fields[f"{group}_predicted"]["labels"][key] = {"label": data["predicted"],
                                                               "confidence": data["predicted_confidence"]}
    files["labels.json"] = {"classes": None, "labels": combined}
    for name, content in fields.items():
        files[f"fields/{name}.json"] = content
    targets = {name: check_target(folder / name, force) for name in files}
    for name, content in files.items():
        text = json.dumps(content, ensure_ascii=False, indent=1)
        replace_atomically(targets[name], lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
    return {"format": "fiftyone", "path": str(folder), "images": len(items),
            "labels": sum(len(item.labels) for item in items), "manifest": str(folder / "data.json"),
            "labels_file": str(folder / "labels.json"),
            "fields": {name: str(folder / "fields" / f"{name}.json") for name in fields}}
