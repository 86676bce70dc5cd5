"""Duplicate marks: a reviewer keeps one image of a duplicate group and marks the rest.

A mark is a review decision: it writes the mark and an append-only ``DuplicateMarkEvent`` in the
caller's transaction, and it can be undone (the mark gets ``undone_at``, and an ``unmark`` event
is written). A marked image leaves the review queues (:func:`not_marked`), ``label`` skips it,
and ``export --exclude-duplicates`` leaves it out; a plain export names the image it duplicates.
Nothing is deleted, on disk or in the catalog.

Pure catalog logic: no Flask here.
"""

from __future__ import annotations

from typing import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..errors import LabelerError, NotFound
from ..store.catalog import DuplicateGroup, DuplicateMark, DuplicateMarkEvent, DuplicateMember, utcnow


class MarkError(LabelerError):
    """A mark that cannot be made as asked (the image to keep is not in the group, ...)."""


def not_marked(image_id_column):
    """A SQL condition: the image in ``image_id_column`` carries no standing duplicate mark."""
    return ~select(DuplicateMark.id).where(DuplicateMark.image_id == image_id_column,
                                           DuplicateMark.undone_at.is_(None)).exists()


def marked(session: Session, image_ids: Sequence[int] | None = None) -> dict[int, int]:
    """The standing marks: {marked image id: the image it duplicates}, of ``image_ids`` or all."""
    query = select(DuplicateMark.image_id, DuplicateMark.duplicate_of).where(DuplicateMark.undone_at.is_(None))
    if image_ids is None:
        return dict(session.execute(query).all())
    wanted = sorted(set(map(int, image_ids)))
    out: dict[int, int] = {}
    for start in range(0, len(wanted), 10_000):
        out.update(session.execute(query.where(DuplicateMark.image_id.in_(wanted[start:start + 10_000]))).all())
    return out


def summary(session: Session) -> list[int]:
    """[count, highest id, sum of ids] of the standing marks: ``label`` relabels when it moves."""
    row = session.execute(select(func.count(), func.max(DuplicateMark.id), func.sum(DuplicateMark.id))
                          .where(DuplicateMark.undone_at.is_(None))).one()
    return [int(v or 0) for v in row]


def _group(session: Session, group_id: int) -> tuple[DuplicateGroup, list[int]]:
    group = session.get(DuplicateGroup, group_id)
    if group is None:
        raise NotFound(f"no duplicate group with id {group_id}")
    members = list(session.scalars(select(DuplicateMember.image_id).where(DuplicateMember.group_id == group_id)
                                   .order_by(DuplicateMember.image_id)))
    return group, members


def _unmark(session: Session, mark: DuplicateMark, user_id: int | None) -> None:
    mark.undone_at = utcnow()
    session.add(DuplicateMarkEvent(mark_id=mark.id, image_id=mark.image_id, duplicate_of=mark.duplicate_of,
                                   action="unmark", user_id=user_id))


def mark_group(session: Session, group_id: int, keep: int | None, user_id: int | None) -> dict:
    """Keep ``keep`` (default: the group's suggestion) and mark every other image of the group as
    its duplicate: ``{"group", "keep", "marked": [image ids]}``. The kept image loses any mark it
    had; an image marked before as a copy of another is marked anew."""
    group, members = _group(session, group_id)
    keep = group.keep_image_id if keep is None else int(keep)
    if keep not in members:
        raise MarkError(f"image {keep} is not in duplicate group {group_id} (its images: "
                        f"{', '.join(map(str, members))})")
    standing = {m.image_id: m for m in session.scalars(select(DuplicateMark).where(
        DuplicateMark.image_id.in_(members), DuplicateMark.undone_at.is_(None)))}
    if keep in standing:
        _unmark(session, standing.pop(keep), user_id)
    done = []
    for image_id in members:
        if image_id == keep:
            continue
        old = standing.get(image_id)
        if old is not None:
            if old.duplicate_of == keep:
                done.append(image_id)
                continue
            _unmark(session, old, user_id)
        mark = DuplicateMark(image_id=image_id, duplicate_of=keep, level=group.level, user_id=user_id)
        session.add(mark)
        session.flush()
        session.add(DuplicateMarkEvent(mark_id=mark.id, image_id=image_id, duplicate_of=keep, action="mark",
                                       user_id=user_id))
        done.append(image_id)
    session.flush()
    return {"group": group_id, "keep": keep, "marked": done}


def unmark_group(session: Session, group_id: int, user_id: int | None) -> dict:
    """Undo the standing marks of the group's images: ``{"group", "unmarked": [image ids]}``."""
    _, members = _group(session, group_id)
    return {"group": group_id, "unmarked": unmark_images(session, members, user_id)}


def unmark_images(session: Session, image_ids: Sequence[int], user_id: int | None) -> list[int]:
    """Undo the standing marks of ``image_ids``; returns the images unmarked."""
    marks = list(session.scalars(select(DuplicateMark).where(DuplicateMark.image_id.in_(list(image_ids)),
                                                             DuplicateMark.undone_at.is_(None))))
    for mark in marks:
        _unmark(session, mark, user_id)
    session.flush()
    return sorted(m.image_id for m in marks)


def events(session: Session, image_id: int) -> list[dict]:
    """An image's marks and unmarks, oldest first."""
    return [{"action": e.action, "duplicate_of": e.duplicate_of, "user_id": e.user_id,
             "at": e.created_at.isoformat(timespec="seconds")}
            for e in session.scalars(select(DuplicateMarkEvent).where(DuplicateMarkEvent.image_id == image_id)
                                     .order_by(DuplicateMarkEvent.id))]
