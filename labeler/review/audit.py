"""Finding wrong labels among the reviewed ones (``manage.py audit``, the queue's ``suspect`` sort).

A reviewed or imported label (a person's or another tool's) is checked against what the group's
classifier, fitted on the *other* reviews, says about its image: out-of-fold predicted
probabilities on the stored vectors (:func:`fewshot.learn_group` picks the method and the
temperature, :func:`fewshot.out_of_fold_confidence` refits it without each fold). cleanlab's
confident learning (``find_label_issues``) then says which labels are probably wrong, and its
self-confidence ranks them: ``score = 1 - p(given label)``. Confident learning's count of label
issues sets ``cutoff``: that many of the most suspect labels score at or above it (and never a
score of one half or less). Scores are kept on the labels (``suspect_score``) for the queue.
Reads no truth file.
"""

from __future__ import annotations

import hashlib

import numpy as np
from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.orm import Session

from ..collection import Collection
from ..core import fewshot
from ..errors import LabelerError
from ..labeling.bulk import logit_scale
from ..labeling.learning import option_vectors, prompt_set_of_labels, reviews
from ..store import db
from ..store.catalog import DECIDED, REVIEWED_ONLY, ImageFile, Label, ReviewEvent, Setting, User
from ..store.stats import label_groups

MIN_REVIEWS = 10  # fewer reviewed labels than this: nothing to cross-validate on
PROBABLY = 0.5  # the lowest cutoff: above it a label's value is less likely than not


def cutoff_key(group: str) -> str:
    """The setting that keeps a group's latest audit cutoff (the dashboard counts suspects above it)."""
    return "audit.cutoff:" + hashlib.sha256(group.encode()).hexdigest()[:32]


def suspect_count(session: Session, group: str) -> int | None:
    """How many of the group's labels scored at or above its latest audit's cutoff; None: never audited."""
    raw = session.scalar(select(Setting.value).where(Setting.key == cutoff_key(group)))
    if raw is None:
        return None
    return int(session.scalar(select(func.count()).select_from(Label).where(
        Label.group == group, REVIEWED_ONLY, Label.suspect_score >= float(raw))) or 0)


def suspects_by_origin(session: Session) -> dict[str, list[dict]]:
    """Per audited group, who gave its audited labels their values and how many of them are suspects:
    ``[{"origin": "reviewer" | "import", "name", "source", "audited", "suspects"}]``, most suspects first.

    A label's origin is its newest review event: a reviewer's decision (``name`` the reviewer), or
    an import (``source`` the file's name, ``name`` who imported it, None from the command line).
    """
    out: dict[str, list[dict]] = {}
    cutoffs = {key: float(value) for key, value in session.execute(
        select(Setting.key, Setting.value).where(Setting.key.like("audit.cutoff:%"))).all()}
    if not cutoffs:
        return out
    groups = list(session.scalars(select(Label.group).where(REVIEWED_ONLY, Label.suspect_score.is_not(None))
                                  .distinct().order_by(Label.group)))
    for group in groups:
        cutoff = cutoffs.get(cutoff_key(group))
        if cutoff is None:
            continue
        audited = select(Label.id).where(Label.group == group, REVIEWED_ONLY, Label.suspect_score.is_not(None))
        newest = (select(ReviewEvent.label_id, func.max(ReviewEvent.id).label("event_id"))
                  .where(ReviewEvent.label_id.in_(audited)).group_by(ReviewEvent.label_id).subquery())
        is_import = ReviewEvent.action == "import"
        rows = session.execute(
            select(is_import, User.name, ReviewEvent.source, func.count(),
                   func.sum(case((Label.suspect_score >= cutoff, 1), else_=0)))
            .select_from(newest).join(ReviewEvent, ReviewEvent.id == newest.c.event_id)
            .join(Label, Label.id == newest.c.label_id).outerjoin(User, User.id == ReviewEvent.user_id)
            .group_by(is_import, User.name, ReviewEvent.source)).all()
        entries = [{"origin": "import" if imported else "reviewer", "name": name,
                    "source": source if imported else None, "audited": int(count), "suspects": int(suspects or 0)}
                   for imported, name, source, count, suspects in rows]
        out[group] = sorted(entries, key=lambda e: (-e["suspects"], -e["audited"], e["origin"], e["name"] or "",
                                                    e["source"] or ""))
    return out


class AuditError(LabelerError):
    """An audit that cannot run as asked (unknown group, too few reviews)."""


def suspect_scores(pred_probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(score ``[K]``, flagged ``[K]`` bool) for out-of-fold ``pred_probs`` ``[K, O]`` and given ``labels`` ``[K]``.

    ``score = 1 - pred_probs[k, labels[k]]`` (cleanlab's self-confidence, turned so that higher is
    more suspect); ``flagged``: confident learning's label issues (prune by noise rate).
    """
    from cleanlab.filter import find_label_issues  # lazy: cleanlab (and its sklearn, pandas) only for an audit
    from cleanlab.rank import get_label_quality_scores

    labels = np.asarray(labels, np.int64)
    probs = np.asarray(pred_probs, np.float64)
    probs = probs / probs.sum(axis=1, keepdims=True)
    score = 1.0 - get_label_quality_scores(labels, probs, method="self_confidence")
    if len(np.unique(labels)) < 2:
        return score, np.zeros(len(labels), bool)
    flagged = find_label_issues(labels, probs, filter_by="prune_by_noise_rate", n_jobs=1)
    return score, np.asarray(flagged, bool)


def audit_group(collection: Collection, group: str, limit: int = 200) -> dict:
    """``{"group", "cutoff", "flagged", "audited", "suspects": [...]}`` for one group; stores the scores."""
    with collection.session() as s:
        model_id = collection.models.require_id(s)
        prompt_set = prompt_set_of_labels(s, group)
        if prompt_set is None or group not in prompt_set.groups:
            raise AuditError(f"group '{group}' has no prompt set to audit against")
        options = prompt_set.groups[group].option_names
        found = reviews(s, group, options)
        image_ids, vecs = collection.vectors.read(s, found.image_ids, model_id=model_id)
        scale = logit_scale(collection, s)
    if len(found) < MIN_REVIEWS or len(np.unique(found.labels)) < 2:
        reviewed, options_seen = len(found), len(np.unique(found.labels))
        raise AuditError(f"group '{group}' has {reviewed} reviewed label{'s' * (reviewed != 1)} of "
                         f"{options_seen} option{'s' * (options_seen != 1)}: audit needs {MIN_REVIEWS} or "
                         "more, of two options or more")
    labels = found.labels[np.searchsorted(found.image_ids, image_ids)]
    text_vecs = option_vectors(collection, prompt_set, group)
    fit = fewshot.learn_group(vecs, labels, text_vecs, scale)
    probs = fewshot.out_of_fold_confidence(vecs, labels, text_vecs, scale, fit.method, fit.params, fit.temperature)
    score, flagged = suspect_scores(probs, labels)
    # Scores are stored to 6 places, and the cutoff is one of them: rounded once, here, the catalog's
    # "score >= cutoff" counts what this run flagged (unrounded, a flagged label whose score rounded
    # down fell below its own cutoff, and the dashboard lost it).
    score = np.round(score, 6)
    order = np.argsort(-score, kind="stable")
    # Confident learning says how many labels are wrong; the cutoff puts that many of the most
    # suspect above it (its own set is not a score threshold: lower-scored labels of a class
    # with a low threshold get in). Never below one half: above the cutoff, the given value is
    # less likely than not.
    count = int(flagged.sum())
    cutoff = max(float(score[order[count - 1]]), PROBABLY) if count else 1.0
    flagged = score >= cutoff
    suggested = probs.argmax(axis=1)

    def store(s: Session) -> None:
        s.merge(Setting(key=cutoff_key(group), value=repr(cutoff)))
        s.execute(update(Label).where(Label.group == group, REVIEWED_ONLY).values(suspect_score=None)
                  .execution_options(synchronize_session=False))
        ids = dict(s.execute(select(Label.image_id, Label.id).where(Label.group == group, REVIEWED_ONLY,
                                                                      Label.status.in_(DECIDED))).all())
        table = Label.__table__  # Core: a score is no decision, so the label's version stays
        rows = [{"label_id": ids[int(i)], "score": float(v)} for i, v in zip(image_ids, score) if int(i) in ids]
        if rows:
            s.execute(update(table).where(table.c.id == bindparam("label_id")).values(suspect_score=bindparam("score")),
                      rows)

    db.write_transaction(collection.config, store)
    top = order[:limit]
    with collection.session() as s:
        chosen = [int(image_ids[k]) for k in top]
        paths: dict[int, str] = {}
        for image_id, path in s.execute(select(ImageFile.image_id, ImageFile.path)
                                        .where(ImageFile.image_id.in_(chosen))
                                        .order_by(ImageFile.status != "ok", ImageFile.id)):
            paths.setdefault(image_id, path)
        by = _reviewed_by(s, group, chosen)
    suspects = [{"image_id": int(image_ids[k]), "path": paths.get(int(image_ids[k])), "group": group,
                 "value": options[labels[k]], "suggested": options[suggested[k]], "score": round(float(score[k]), 6),
                 "reviewed_by": by.get(int(image_ids[k]))} for k in top]
    return {"group": group, "cutoff": round(cutoff, 6), "flagged": int(flagged.sum()), "audited": len(labels),
            "method": fit.method, "suspects": suspects}


def _reviewed_by(session: Session, group: str, image_ids: list[int]) -> dict[int, str | None]:
    """Who gave each label its value: the reviewer's name, ``import`` for an imported one (with
    its reviewer: a user, or the name the import kept as text)."""
    newest = (select(func.max(ReviewEvent.id)).join(Label, Label.id == ReviewEvent.label_id)
              .where(Label.group == group, Label.image_id.in_(image_ids)).group_by(ReviewEvent.label_id))
    rows = session.execute(select(Label.image_id, ReviewEvent.action,
                                  func.coalesce(User.name, ReviewEvent.reviewer_name))
                           .join(Label, Label.id == ReviewEvent.label_id)
                           .outerjoin(User, User.id == ReviewEvent.user_id)
                           .where(ReviewEvent.id.in_(newest))).all()
    return {image_id: (f"import ({name})" if name else "import") if action == "import" else name
            for image_id, action, name in rows}


def audit(collection: Collection, group: str | None = None, limit: int = 200) -> list[dict]:
    """Audit one group, or every group with enough reviewed labels; a list of :func:`audit_group` reports."""
    with collection.session() as s:
        known = label_groups(s)
        reviewed = dict(s.execute(select(Label.group, func.count()).where(Label.status.in_(DECIDED), REVIEWED_ONLY)
                                  .group_by(Label.group)).all())
    if group is not None:
        if group not in known:
            raise AuditError(f"unknown group '{group}' (have: {', '.join(known) or 'no labels yet'})")
        return [audit_group(collection, group, limit)]
    names = [g for g in known if reviewed.get(g, 0) >= MIN_REVIEWS]
    if not names:
        raise AuditError(f"no group has {MIN_REVIEWS} or more reviewed labels to audit")
    out = []
    for name in names:
        try:
            out.append(audit_group(collection, name, limit))
        except AuditError:
            continue  # e.g. reviews of a single option: nothing to tell apart
    return out
