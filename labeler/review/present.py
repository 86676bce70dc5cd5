"""Catalog rows as plain dicts: what the web pages, the JSON API and the exports show.

One function per kind of thing, so a label looks the same everywhere. Links are the front end's
business: a caller that shows URLs passes ``links`` (an image id → ``{name: url}``), the
library knows no routes.
"""

from __future__ import annotations

from collections import namedtuple
from functools import lru_cache
from pathlib import PurePath
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, selectinload

from . import decisions as review, flags
from ..core import stored_scores
from ..store.catalog import Image, Label, PromptSetRecord, ReviewEvent, User
from ..errors import NotFound

if TYPE_CHECKING:
    from ..search import Hit

Links = Callable[[int], dict[str, str]]  # image id → {"thumb_url": ..., "detail_url": ..., ...}


def _no_links(image_id: int) -> dict[str, str]:
    return {}


def model_confidence(label: Label, value: str | None) -> float | None:
    """The model's confidence in ``value`` for this label: its proposal's, or the option's score.

    None when the model gave the value no score (a correction outside the prompt set, say), so
    a corrected label never shows the old proposal's confidence as if it were the new value's.
    """
    if value is None:
        return None
    if value == label.predicted:
        return label.confidence
    score = stored_scores.label_scores(label).get(value)
    return score["confidence"] if score is not None else None


def label_dict(label: Label, links: Links = _no_links) -> dict:
    """A label (or a row of :data:`LABEL_COLUMNS`): its value and proposal, scores per option,
    review state and who reviewed it.

    ``confidence`` is the model's confidence in ``predicted``; ``value_confidence`` its
    confidence in ``value`` (they differ once a reviewer corrected the label).
    """
    scores = stored_scores.label_scores(label)
    return {
        "id": label.id,
        "image_id": label.image_id,
        "group": label.group,
        "value": label.value,
        "predicted": label.predicted,
        "confidence": label.confidence,
        "value_confidence": model_confidence(label, label.value),
        "margin": label.margin,
        "strategy": label.strategy,
        "status": label.status,
        "version": label.version,
        "options": list(scores.keys()),
        "scores": scores,
        "reviewed_by": label.reviewed_by,
        "reviewer_name": label.reviewer_name,  # an imported reviewer who is no labeler user
        "reviewed_at": label.reviewed_at.isoformat() if label.reviewed_at else None,
        **links(label.image_id),
    }


def event_dict(event: ReviewEvent, names: dict[int, str]) -> dict:
    """A review event; ``names`` maps user ids to user names."""
    return {
        "id": event.id,
        "label_id": event.label_id,
        # a user's name, else the name an import kept as text (no labeler user has it)
        "user": names.get(event.user_id) if event.user_id is not None else event.reviewer_name,
        "action": event.action,
        "before_value": event.before_value,
        "after_value": event.after_value,
        "before_status": event.before_status,
        "after_status": event.after_status,
        "created_at": event.created_at.isoformat(),
    }


def image_dict(image: Image, links: Links = _no_links) -> dict:
    return {
        "id": image.id,
        "sha256": image.sha256,
        "width": image.width,
        "height": image.height,
        "format": image.format,
        "status": image.status,
        "path": image.path,
        **links(image.id),
    }


def file_names(session: Session, image_ids: Iterable[int]) -> dict[int, str]:
    """Each image's file name without its folder (of the path ``Image.path`` picks), for alt
    text and control names; an image with no file gets none."""
    ids = list(image_ids)
    if not ids:
        return {}
    images = session.scalars(select(Image).where(Image.id.in_(ids)).options(selectinload(Image.files)))
    return {image.id: PurePath(image.path).name for image in images if image.path}


def image_detail(session: Session, image_id: int, links: Links = _no_links) -> dict:
    """An image with its labels, their review history (with user names and groups) and the ids
    of the prompt sets that made the labels; :class:`NotFound` when there is no such image."""
    image = session.get(Image, image_id)
    if image is None:
        raise NotFound(f"no image with id {image_id}")
    labels = list(session.scalars(select(Label).where(Label.image_id == image_id).order_by(Label.group)))
    events = review.history(session, [label.id for label in labels])
    user_ids = {e.user_id for e in events if e.user_id is not None}
    names = ({uid: name for uid, name in session.execute(select(User.id, User.name).where(User.id.in_(user_ids)))}
             if user_ids else {})
    group_of = {label.id: label.group for label in labels}
    return {
        **image_dict(image, links),
        "labels": [label_dict(label, links) for label in labels],
        "history": [dict(event_dict(e, names), group=group_of.get(e.label_id)) for e in events],
        "prompt_set_ids": sorted({label.prompt_set_id for label in labels if label.prompt_set_id}),
        "flags": flags.of_images(session, [image_id]).get(image_id, []),
    }


# What label_dict reads: rows of just these columns stand in for labels, with no ORM object each.
LABEL_COLUMNS = (Label.id, Label.image_id, Label.group, Label.value, Label.predicted, Label.confidence,
                 Label.margin, Label.strategy, Label.status, Label.version, Label.reviewed_by,
                 Label.reviewer_name, Label.reviewed_at, Label.option_scores, Label.prompt_set_id)
# ... plus the label's prompt set, which names the options its scores are stored in order of
_LabelRow = namedtuple("_LabelRow", [column.key for column in LABEL_COLUMNS] + ["prompt_set"])
_LABEL_ROWS = (select(*LABEL_COLUMNS, PromptSetRecord.content_hash)
               .outerjoin(PromptSetRecord, PromptSetRecord.id == Label.prompt_set_id)
               .where(Label.image_id.in_(bindparam("ids", expanding=True))).order_by(Label.image_id, Label.group))
# A stored prompt set is its content: its hash names one source forever, so a source read once
# serves every later request (the few versions a catalog holds; cleared if it ever grows past this).
_PromptSetSource = namedtuple("_PromptSetSource", "content_hash source")
_SOURCES: dict[str, _PromptSetSource] = {}
_SOURCES_KEPT = 256
HIT_LABELS_KEPT = 4096  # label dicts of search hits kept per process (a few KB each)


def label_rows(session: Session, image_ids: Sequence[int]) -> list[tuple]:
    """The labels of ``image_ids`` as rows of :data:`LABEL_COLUMNS` (by image, then group), for label_dict.

    One query whatever the number of labels, plus one for the source of a prompt-set version
    this process has not read before.
    """
    rows = session.execute(_LABEL_ROWS, {"ids": [int(i) for i in image_ids]}).all()
    missing = {row.content_hash for row in rows if row.content_hash is not None} - _SOURCES.keys()
    if missing:
        if len(_SOURCES) + len(missing) > _SOURCES_KEPT:
            _SOURCES.clear()
        for content_hash, source in session.execute(select(PromptSetRecord.content_hash, PromptSetRecord.source)
                                                    .where(PromptSetRecord.content_hash.in_(missing))):
            _SOURCES[content_hash] = _PromptSetSource(content_hash, source)
    return [_LabelRow(*row[:-1], _SOURCES.get(row[-1]) if row[-1] is not None else None) for row in rows]


@lru_cache(maxsize=HIT_LABELS_KEPT)
def _hit_label(row: tuple) -> dict:
    """``label_dict`` of a row of :func:`label_rows`, kept while the row is unchanged.

    The row is every input of the dict (a review or a relabel changes its version, value or
    scores, so a changed label is a new key), and a search answer of 20 hits builds about 160
    of them, most of its time; images that come up again (the next page, another reviewer's same
    query) reuse theirs. Callers never change the dicts they get.
    """
    return label_dict(row)


def hit_dicts(session: Session, hits: Sequence["Hit"], links: Links = _no_links) -> list[dict]:
    """Search hits, best first, each with its image's labels (by group) and file name; one query for all the labels."""
    ids = [int(h.image_id) for h in hits]
    labels: dict[int, list[dict]] = {}
    if ids:
        for row in label_rows(session, ids):
            try:
                shown = _hit_label(row)
            except TypeError:  # a driver's unhashable value (a memoryview for bytes, say): built afresh
                shown = label_dict(row)
            labels.setdefault(row.image_id, []).append(shown)
    # a hit carries its image's present path already; only images with none need the catalog's
    names = {int(h.image_id): PurePath(h.path).name for h in hits if h.path}
    names.update(file_names(session, [i for i in ids if i not in names]))
    return [{"image_id": int(h.image_id), "score": float(h.score), "labels": labels.get(int(h.image_id), []),
             "name": names.get(int(h.image_id)), **links(int(h.image_id))} for h in hits]
