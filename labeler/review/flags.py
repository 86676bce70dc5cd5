"""Flags and notes on images and labels: "ambiguous", "bad image", or the team's own names.

A flag on a label also marks its image (queues and searches filtering by a flag find both); a
note is free text on a flag. Pure catalog logic: no Flask here.
"""

from __future__ import annotations

from typing import Sequence

from sqlalchemy import and_, delete, exists, or_, select
from sqlalchemy.orm import Session

from ..errors import LabelerError, NotFound
from ..store.catalog import Flag, Image, Label, User

DEFAULT_FLAGS = ("ambiguous", "bad image")
MAX_NAME = 64
MAX_NOTE = 2000


class FlagError(LabelerError):
    """A flag that cannot be stored as asked (a name too long, no target)."""


def clean_name(name: object) -> str:
    """A flag name as stored: trimmed text of 1 to :data:`MAX_NAME` characters; else :class:`FlagError`."""
    if not isinstance(name, str) or not name.strip():
        raise FlagError("name: a flag needs a name, such as 'ambiguous' or 'bad image'")
    name = " ".join(name.split())
    if len(name) > MAX_NAME:
        raise FlagError(f"name: a flag name has at most {MAX_NAME} characters (this one has {len(name)})")
    return name


def _clean_note(note: object) -> str | None:
    if note is None:
        return None
    if not isinstance(note, str):
        raise FlagError("note: a note must be text")
    note = note.strip()
    if len(note) > MAX_NOTE:
        raise FlagError(f"note: a note has at most {MAX_NOTE} characters")
    return note or None


def add(session: Session, name: object, user_id: int | None, image_id: int | None = None,
        label_id: int | None = None, note: object = None) -> Flag:
    """Flag a label (``label_id``) or an image (``image_id``); flagging the same thing with the same
    name again updates its note. Raises :class:`FlagError` or :class:`NotFound`."""
    name = clean_name(name)
    note = _clean_note(note)
    if label_id is not None:
        label = session.get(Label, label_id)
        if label is None:
            raise NotFound(f"no label with id {label_id}")
        image_id = label.image_id
    elif image_id is None:
        raise FlagError("a flag needs an image_id or a label_id")
    elif session.get(Image, image_id) is None:
        raise NotFound(f"no image with id {image_id}")
    same = and_(Flag.image_id == image_id, Flag.name == name,
                Flag.label_id.is_(None) if label_id is None else Flag.label_id == label_id)
    flag = session.scalars(select(Flag).where(same)).first()
    if flag is None:
        flag = Flag(image_id=image_id, label_id=label_id, name=name, note=note, user_id=user_id)
        session.add(flag)
    else:
        flag.note, flag.user_id = note, user_id
    session.flush()
    return flag


def remove(session: Session, flag_id: int) -> None:
    if not session.execute(delete(Flag).where(Flag.id == flag_id)).rowcount:
        raise NotFound(f"no flag with id {flag_id}")


def of_images(session: Session, image_ids: Sequence[int]) -> dict[int, list[dict]]:
    """Every flag of the images (their labels' too), by image id, oldest first."""
    if not image_ids:
        return {}
    out: dict[int, list[dict]] = {}
    rows = session.execute(select(Flag, User.name, Label.group).outerjoin(User, User.id == Flag.user_id)
                           .outerjoin(Label, Label.id == Flag.label_id)
                           .where(Flag.image_id.in_(set(image_ids))).order_by(Flag.id))
    for flag, user, group in rows:
        out.setdefault(flag.image_id, []).append(
            {"id": flag.id, "name": flag.name, "note": flag.note, "label_id": flag.label_id, "group": group,
             "user": user, "created_at": flag.created_at.isoformat()})
    return out


def names(session: Session) -> list[str]:
    """The flag names to offer: the defaults, then every other name in use."""
    used = set(session.scalars(select(Flag.name).distinct()))
    return [*DEFAULT_FLAGS, *sorted(used - set(DEFAULT_FLAGS))]


def flagged(name: str):
    """A condition on :class:`Label`: the label, or its image, carries a flag ``name``."""
    return exists().where(Flag.image_id == Label.image_id, Flag.name == name,
                          or_(Flag.label_id.is_(None), Flag.label_id == Label.id))


def flagged_images(session: Session, name: str, image_ids: Sequence[int]) -> set[int]:
    """Which of ``image_ids`` carry a flag ``name`` (on the image or any of its labels)."""
    if not image_ids:
        return set()
    return set(session.scalars(select(Flag.image_id).where(Flag.name == name,
                                                           Flag.image_id.in_(set(image_ids)))))
