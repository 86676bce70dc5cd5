"""The Hugging Face ``datasets`` export: an ``imagefolder`` dataset laid over the photos where they are.

Into the folder OUT, which holds every exported image (below it, at any depth), go:

- ``metadata.parquet``: one row per image, ``file_name`` relative to OUT, then per group its value,
  ``GROUP_predicted``, ``GROUP_status``, ``GROUP_confidence`` and ``GROUP_reviewed_by``. Its schema
  carries the features the way ``datasets`` writes them (the ``huggingface`` key), each group (and
  its ``_predicted``) a ``ClassLabel`` whose names are the prompt set's options in their order. So
  ``load_dataset("imagefolder", data_dir=OUT)`` yields class ids that mean the same whatever the
  alphabet says: ``datasets`` 5.2 reads the features of a named builder from there, never from a
  card. Parquet, not JSONL, because a JSONL file cannot carry them;
- ``README.md``: a dataset card whose ``configs`` declare the same features, for
  ``datasets.load_dataset(OUT)`` and the Hub;
- ``dataset_info.json``: the same features as ``datasets.Features.to_dict`` writes them.

``datasets`` is not needed to write them: the card and the info are plain YAML and JSON, and the
metadata needs only ``pyarrow`` (which ``datasets`` itself requires).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import yaml
from sqlalchemy import select

from ..collection import Collection
from ..core.prompts import PromptSet
from ..files import replace_atomically
from ..store.catalog import User
from .records import ExportError, Item, check_target, export_label, group_choices, is_under, labeled_images

FILES = ("metadata.parquet", "README.md", "dataset_info.json")
OLD_METADATA = "metadata.jsonl"  # an earlier export's: imagefolder refuses two metadata formats in one folder


def export_hf(collection: Collection, out: Path, groups: Sequence[str] | None, prompt_set: PromptSet | None,
              root: Path | None, force: bool, exclude_duplicates: bool = False) -> dict:
    """Write the three files into the folder ``out`` (``root``, when given, must be ``out``: file names
    are relative to where ``metadata.parquet`` lies); returns the export report with ``metadata``."""
    folder = Path(os.path.abspath(out))
    if root is not None and Path(os.path.abspath(root)) != folder:
        raise ExportError(f"--format hf writes into the folder that holds the images; give it as OUT "
                          f"({root}) rather than --root")
    if not folder.is_dir():
        raise ExportError(f"{out} is not a folder: --format hf writes metadata.parquet into the folder that "
                          "holds the images")
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ExportError("--format hf writes metadata.parquet with pyarrow: pip install 'labeler[hf]' "
                          "(datasets installs pyarrow too)") from None
    targets = [check_target(folder / name, force) for name in FILES]
    old_metadata = check_target(folder / OLD_METADATA, force)
    items = list(labeled_images(collection, groups, exclude_duplicates))
    all_groups = sorted({g for item in items for g in item.labels})
    with collection.session() as s:
        reviewers = dict(s.execute(select(User.id, User.name)).all())
        choices = group_choices(s, all_groups, items, prompt_set)
    rows = [metadata_row(item, folder, all_groups, reviewers) for item in items]
    features = hf_features(all_groups, choices)
    table = metadata_table(pa, rows, features)
    replace_atomically(targets[0], lambda tmp: pq.write_table(table, tmp))
    texts = (dataset_card(features, len(rows)),
             json.dumps({"description": "labeler export", "features": features}, indent=1) + "\n")
    for target, text in zip(targets[1:], texts):
        replace_atomically(target, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
    old_metadata.unlink(missing_ok=True)  # reached only with --force
    return {"format": "hf", "path": str(folder), "images": len(items),
            "labels": sum(len(item.labels) for item in items), "metadata": str(targets[0]),
            "class_names": choices}


def metadata_row(item: Item, folder: Path, groups: list[str], reviewers: dict[int, str]) -> dict:
    """One image's ``metadata.parquet`` row; :class:`ExportError` when it lies outside ``folder``."""
    path = next((p for p in item.paths if is_under(p, folder)), None)
    if path is None:
        raise ExportError(f"{item.paths[0] if item.paths else item.image.id} is not under {folder}; "
                          "--format hf needs a folder that holds every image (give a higher one)")
    row: dict = {"file_name": Path(os.path.relpath(path, folder)).as_posix(), "image_id": item.image.id,
                 "sha256": item.image.sha256}
    for group in groups:
        label = item.labels.get(group)
        data = export_label(label, reviewers) if label is not None else {}
        row[group] = data.get("value")
        row[f"{group}_predicted"] = data.get("predicted")
        row[f"{group}_status"] = data.get("status")
        row[f"{group}_confidence"] = data.get("confidence")
        row[f"{group}_reviewed_by"] = data.get("reviewed_by")
    return row


ARROW_TYPES = {"int64": "int64", "string": "string", "float64": "float64"}


def metadata_table(pa, rows: list[dict], features: dict):
    """``rows`` as an Arrow table whose schema carries ``features`` (``file_name`` standing for the
    image): ClassLabel columns hold class ids, in the order of their names."""
    columns, schema = {}, {"file_name": {"dtype": "string", "_type": "Value"}}
    columns["file_name"] = pa.array([row["file_name"] for row in rows], pa.string())
    for name, feature in features.items():
        if feature["_type"] == "Image":
            continue
        schema[name] = feature
        if feature["_type"] == "ClassLabel":
            index = {value: i for i, value in enumerate(feature["names"])}
            columns[name] = pa.array([None if row[name] is None else index[row[name]] for row in rows], pa.int64())
        else:
            columns[name] = pa.array([row[name] for row in rows], getattr(pa, ARROW_TYPES[feature["dtype"]])())
    table = pa.table(columns)
    return table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": schema}})})


def hf_features(groups: list[str], choices: dict[str, list[str]]) -> dict:
    """The dataset's features in ``datasets.Features.to_dict`` form: the image, ids, and per group its
    value and proposal as ``ClassLabel`` (names in ``choices`` order), status, confidence, reviewer."""
    features: dict = {"image": {"_type": "Image"}, "image_id": {"dtype": "int64", "_type": "Value"},
                      "sha256": {"dtype": "string", "_type": "Value"}}
    for group in groups:
        classes = {"names": list(choices[group]), "_type": "ClassLabel"}
        features[group] = classes
        features[f"{group}_predicted"] = dict(classes)
        features[f"{group}_status"] = {"dtype": "string", "_type": "Value"}
        features[f"{group}_confidence"] = {"dtype": "float64", "_type": "Value"}
        features[f"{group}_reviewed_by"] = {"dtype": "string", "_type": "Value"}
    return features


def _yaml_feature(name: str, feature: dict) -> dict:
    """One feature as a dataset card's YAML lists it."""
    if feature["_type"] == "ClassLabel":
        names = {str(i): n for i, n in enumerate(feature["names"])}
        return {"name": name, "dtype": {"class_label": {"names": names}}}
    if feature["_type"] == "Image":
        return {"name": name, "dtype": "image"}
    return {"name": name, "dtype": feature["dtype"]}


def dataset_card(features: dict, rows: int) -> str:
    """README.md: YAML front matter with one ``default`` config that declares the features."""
    front = {"configs": [{"config_name": "default", "drop_labels": True,
                          "features": [_yaml_feature(n, f) for n, f in features.items()]}]}
    return ("---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n"
            f"# labeler export\n\n{rows} images, labeled by labeler. Load with "
            "`datasets.load_dataset(\"path/to/this/folder\")`: each group is a `ClassLabel` in the prompt "
            "set's option order; `GROUP_status` says whether a reviewer decided it.\n")
