"""What every export format shares: the labeled images read as :class:`Item` rows, a label's dict as
exports show it, each group's values in a stable order, and the check on a file before it is written.

:mod:`labeler.exchange.export` writes the single-file formats and dispatches the folder ones to
:mod:`labeler.exchange.huggingface` and :mod:`labeler.exchange.fiftyone`; all three take these from
here, so none of them imports another to reach them.
"""

from __future__ import annotations

import os
import stat
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..review import duplicate_marks, present
from ..store.catalog import Image, Label
from ..collection import Collection
from ..errors import LabelerError
from ..core.prompts import PromptSet



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
            "predicted_confidence": label.confidence, "reviewed_by": _reviewer(label, reviewers),
            "qa_by": reviewers.get((qa_by or {}).get(label.id)),
            "stated_precision": (stated or {}).get(run) if run is not None else None}


def _reviewer(label: Label, reviewers: dict[int, str]) -> str | None:
    """Who reviewed ``label``: its user's name, else the name an import kept as text."""
    return reviewers.get(label.reviewed_by) if label.reviewed_by is not None else label.reviewer_name


def is_under(path: str, root: Path) -> bool:
    """Whether ``path`` is ``root`` or lies below it."""
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
