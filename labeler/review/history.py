"""A reviewer's history: their newest decisions, a bulk accept as one, each undoable or with the
reason it is not (undone already, or someone changed the label since).

Pure catalog logic: no Flask here. The undo itself is ``decisions.undo_event`` / ``undo_bulk``.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..store.catalog import BulkAction, ReviewEvent
from . import decisions

LIMIT = 50


def _at(event_or_bulk) -> str:
    return event_or_bulk.created_at.isoformat()


def recent(session: Session, user_id: int, limit: int = LIMIT) -> list[dict]:
    """The reviewer's newest ``limit`` decisions (accept, correct, reject), newest first; a bulk
    accept is one entry however many labels it took.

    Each entry: ``kind`` (``decision`` or ``bulk``), ``at``, ``undoable`` and, when not, ``why``.
    A decision also names its label (``label_id``, ``version`` now, ``group``, ``image_id``,
    ``name``), its ``action`` and the values ``before`` and ``after``; a bulk carries
    ``decisions.bulk_dict``'s fields under ``bulk``. A decision is undoable while its label is as
    the decision left it: no one (the reviewer included) changed or undid it since.
    """
    limit = max(1, min(limit, LIMIT))
    events = session.scalars(select(ReviewEvent).where(ReviewEvent.user_id == user_id,
                                                       ReviewEvent.action.in_(decisions.DECISIONS),
                                                       ReviewEvent.bulk_id.is_(None))
                             .order_by(ReviewEvent.id.desc()).limit(limit)).all()
    bulks = session.scalars(select(BulkAction).where(BulkAction.user_id == user_id)
                            .order_by(BulkAction.id.desc()).limit(limit)).all()
    entries = sorted([("decision", e) for e in events] + [("bulk", b) for b in bulks],
                     key=lambda kind_row: (kind_row[1].created_at, kind_row[0] == "decision", kind_row[1].id),
                     reverse=True)[:limit]
    labels = {label.id: label for label in
              decisions.labels_by_id(session, [row.label_id for kind, row in entries if kind == "decision"])}
    names = decisions.image_names(session, [label.image_id for label in labels.values()])
    out = []
    for kind, row in entries:
        if kind == "bulk":
            out.append({"kind": "bulk", "at": _at(row), "bulk": decisions.bulk_dict(row),
                        "undoable": row.undone_at is None,
                        **({} if row.undone_at is None else {"why": "undone already"})})
            continue
        label = labels.get(row.label_id)
        if label is None:
            continue  # its image left the collection
        entry = {"kind": "decision", "at": _at(row), "event_id": row.id, "label_id": label.id,
                 "version": label.version, "group": label.group, "image_id": label.image_id,
                 "name": names.get(label.image_id, f"image {label.image_id}"), "action": row.action,
                 "before": row.before_value, "after": row.after_value, "undoable": False}
        target = decisions.undo_target(session, label.id)
        if target is not None and target.id == row.id:
            entry["undoable"] = True
        elif target is None or target.id < row.id:
            entry["why"] = "undone already"
        else:
            entry["why"] = decisions.changed_since(target, label)
        out.append(entry)
    return out
