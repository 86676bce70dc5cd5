"""Learning from reviews: each group's reviewed labels in, a stored fit out (``manage.py learn``).

The maths is :mod:`labeler.core.fewshot` on the catalog's stored vectors; this module gathers the
reviews, checks them against the prompt set, and keeps each fit in the catalog, where
``label`` finds it. Accepted labels are positives for their value, corrected ones for the new
value; labels imported with ``import-labels`` count the same. A fit never reads a truth file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..core import fewshot, scoring
from ..core import replay as replay_maths
from ..store.catalog import DECIDED, REVIEWED_ONLY, Fit, Label, PromptSetRecord
from ..store.stats import label_groups
from ..collection import Collection
from ..errors import LabelerError
from ..files import write_atomically
from .candidates import candidate_texts, encode_candidates, related_ensembles, starting_ensembles
from .bulk import EncodedGroup, encode_groups, last_run_prompt_set_id, logit_scale, record_prompt_set
from ..core.prompts import PromptSet, bump_version, parse_prompt_set



class LearnError(LabelerError):
    """Nothing can be learned as asked (no reviews, a group with one option, ...)."""


@dataclass
class Reviews:
    """One group's usable reviews: image ids ``[K]`` and option indices ``[K]``, plus what was skipped."""

    image_ids: np.ndarray
    labels: np.ndarray
    skipped: dict[str, int] = field(default_factory=dict)  # value not in the prompt set → count

    def __len__(self) -> int:
        return len(self.image_ids)


def reviews(session: Session, group: str, option_names: Sequence[str]) -> Reviews:
    """The group's accepted and corrected labels as option indices.

    A value the prompt set does not have (a correction typed by hand) cannot be learned: it is
    counted in ``skipped`` and left out, as is "none of these".
    """
    index = {name: i for i, name in enumerate(option_names)}
    rows = session.execute(select(Label.image_id, Label.value)
                           .where(Label.group == group, Label.status.in_(DECIDED), REVIEWED_ONLY)
                           .order_by(Label.image_id)).all()
    ids, labels, skipped = [], [], {}
    for image_id, value in rows:
        if value in index:
            ids.append(image_id)
            labels.append(index[value])
        else:
            key = "(none of these)" if value is None else value
            skipped[key] = skipped.get(key, 0) + 1
    return Reviews(np.asarray(ids, np.int64), np.asarray(labels, np.int64), skipped)


def prompt_set_of_labels(session: Session, group: str) -> PromptSet | None:
    """The prompt set the group's newest proposals were made with, as it was then.

    The last complete ``label`` run's stamp says it in one keyed read; only without one (a run
    that stopped half way, a catalog from before stamps) are the labels sorted by ``updated_at``,
    which has no index: seconds at a million labels."""
    stamped = last_run_prompt_set_id(session, group)
    if stamped is not None and session.scalar(select(Label.id).where(  # its labels are still there
            Label.group == group, Label.prompt_set_id == stamped).limit(1)) is not None:
        record = session.get(PromptSetRecord, stamped)
        if record is not None:
            return prompt_set_of_record(record)
    record = session.scalar(select(PromptSetRecord).join(Label, Label.prompt_set_id == PromptSetRecord.id)
                            .where(Label.group == group).order_by(Label.updated_at.desc(), Label.id.desc())
                            .limit(1))
    return None if record is None else prompt_set_of_record(record)


def prompt_set_of_record(record: PromptSetRecord) -> PromptSet:
    """A stored prompt set as it was when it was recorded."""
    return parse_prompt_set(yaml.safe_load(record.source), record.path or record.name, record.source,
                            record.content_hash)


def option_vectors(collection: Collection, prompt_set: PromptSet, group: str) -> np.ndarray:
    """The group's zero-shot option vectors ``[O, D]``: the default strategy's ensemble vectors."""
    encoded = encode_groups(collection, prompt_set, [group])[group]
    return scoring.mean_embeddings(encoded.prompt_vecs, encoded.owner, len(encoded.option_names))


def learn(collection: Collection, groups: Sequence[str] | None = None, prompt_set: PromptSet | None = None,
          progress: Callable[[int], None] | None = None,
          fold_progress: Callable[[str, int, int], None] | None = None) -> dict[str, dict]:
    """Fit every chosen group from its reviews and store the fits; returns ``{group: report}``.

    ``progress(1)`` as each group is done; ``fold_progress(group, done, folds)`` as each of its
    cross-validation folds is (a group with many reviews takes most of a run).

    ``prompt_set`` None: each group's own (the one its labels were proposed with). Groups whose
    reviews cannot teach anything keep zero-shot and say why; ``LearnError`` when nothing at all
    can be learned as asked.
    """
    with collection.session() as s:
        model_id = collection.models.require_id(s)
        known = label_groups(s)
        reviewed_groups = set(s.scalars(select(Label.group).where(Label.status.in_(DECIDED), REVIEWED_ONLY)
                                   .distinct()))
    names = list(groups) if groups else known
    if not known:
        raise LearnError("no labels yet: run `manage.py label --prompt-set FILE` first, then review some")
    unknown = [g for g in names if g not in known]
    if unknown:
        raise LearnError(f"no labels in group '{unknown[0]}' (have: {', '.join(known)})")
    if not reviewed_groups.intersection(names):
        raise LearnError("no reviewed labels yet in " + ", ".join(names)
                         + ": accept or correct some in the review UI (or import-labels), then learn")
    scale = logit_scale(collection)
    report: dict[str, dict] = {}
    for name in names:
        with collection.session() as s:
            chosen = prompt_set or prompt_set_of_labels(s, name)
            if chosen is None or name not in chosen.groups:
                raise LearnError(f"group '{name}' is not in prompt set '{getattr(chosen, 'name', None)}'")
            group = chosen.groups[name]
            if len(group.options) < 2:
                if groups:
                    raise LearnError(f"group '{name}' has one option: there is nothing to choose between")
                report[name] = {"reviewed": 0, "method": "zero-shot", "note": "one option: nothing to learn"}
                continue
            found = reviews(s, name, group.option_names)
            prompt_set_id = record_prompt_set(s, chosen)
            image_ids, vecs = collection.vectors.read(s, found.image_ids, model_id=model_id)
        text_vecs = option_vectors(collection, chosen, name)
        labels = found.labels[np.searchsorted(found.image_ids, image_ids)]
        on_fold = (lambda done, folds, name=name: fold_progress(name, done, folds)) if fold_progress else None
        fit = fewshot.learn_group(vecs, labels, text_vecs, scale, on_fold=on_fold)
        entry = {**fit.to_dict(), "prompt_set": {"name": chosen.name, "version": chosen.version}}
        if found.skipped:
            entry["skipped"] = found.skipped
            entry["note"] = (entry["note"] + "; " if entry["note"] else "") + (
                f"{sum(found.skipped.values())} reviewed values are not options of the prompt set "
                f"and were left out: {', '.join(sorted(found.skipped)[:5])}")
        with collection.session() as s:
            row = Fit(group=name, model_id=model_id, prompt_set_id=prompt_set_id, method=fit.method,
                      reviewed=fit.reviewed, report=entry, classifier=fit.classifier.to_bytes())
            s.add(row)
            s.flush()
            entry["fit_id"] = row.id
        report[name] = entry
        if progress is not None:
            progress(1)
    return report


def fit_summary(session: Session) -> dict[str, dict]:
    """Per group, the newest fit's report (for the dashboard): reviewed, method, cv_accuracy, ..."""
    newest = select(func.max(Fit.id)).group_by(Fit.group)
    return {fit.group: {**fit.report, "fit_id": fit.id, "created_at": fit.created_at.isoformat(timespec="seconds")}
            for fit in session.scalars(select(Fit).where(Fit.id.in_(newest)).order_by(Fit.group))}


REPLAY_METHODS = tuple(m for m in fewshot.METHODS if m != "zero-shot") + ("prompts",)


def replay(collection: Collection, prompt_set: PromptSet, truth: dict[str, dict[int, str]], shots: Sequence[int],
           order: str = "random", seed: int = 0, groups: Sequence[str] | None = None,
           methods: Sequence[str] | None = None) -> dict[str, dict]:
    """Simulate reviewing with a truth file (``evaluate --replay``); nothing is written.

    ``truth`` ``{group: {image_id: value}}``. Returns ``{group: {"zero_shot": acc, "shots": {K:
    {"accuracy", "ece", "reviews", "method"}}}}``, scored on the images each replay did not reveal.
    With ``methods`` (of :data:`REPLAY_METHODS`) each group also has ``"methods": {method: {K:
    {...}}}``: that method alone against zero-shot, on the same reviews, the guard deciding.
    """
    if order not in replay_maths.ORDERS:
        raise LearnError(f"unknown order '{order}' (known: {', '.join(replay_maths.ORDERS)})")
    unknown = [m for m in methods or [] if m not in REPLAY_METHODS]
    if unknown:
        raise LearnError(f"unknown method '{unknown[0]}' (known: {', '.join(REPLAY_METHODS)})")
    if "prompts" in (methods or []) and order != "random":
        raise LearnError("--methods prompts replays in random order only (--order random)")
    if not shots or min(shots) < 1:
        raise LearnError("--shots needs positive counts, e.g. 1,2,4,8,16")
    names = [g for g in (groups or prompt_set.groups) if truth.get(g) and g in prompt_set.groups]
    if not names:
        raise LearnError(f"no truth for any group of '{prompt_set.name}'; name CSV columns after the groups")
    scale = logit_scale(collection)
    with collection.session() as s:
        all_ids, all_vecs = collection.vectors.read(s, sorted({i for g in names for i in truth[g]}))
    row_of = {int(i): r for r, i in enumerate(all_ids)}
    results: dict[str, dict] = {}
    pool = None
    if "prompts" in (methods or []):
        texts, families = candidate_texts(prompt_set)
        pool = encode_candidates(collection, texts, collection.config.max_prompt_chars, families)

    for name in names:
        options = prompt_set.groups[name].option_names
        if len(options) < 2:
            continue
        pairs = [(row_of[i], options.index(v)) for i, v in sorted(truth[name].items()) if v in options and i in row_of]
        if len(pairs) < 2:
            continue
        rows, labels = (np.asarray(x, np.int64) for x in zip(*pairs))
        out = replay_maths.replay_group(all_vecs[rows], labels, option_vectors(collection, prompt_set, name),
                                        scale, sorted(set(shots)), order=order, seed=seed, methods=methods,
                                        prompts=(pool.vecs, starting_ensembles(pool, prompt_set.groups[name]),
                                                 pool.families, related_ensembles(pool, prompt_set, name))
                                        if pool is not None else None)
        results[name] = {"zero_shot": round(out["zero_shot"], 4), "n": len(rows),
                         "shots": {k: r.to_dict() for k, r in out["shots"].items()}}
        if methods:
            results[name]["methods"] = {m: {k: r.to_dict() for k, r in by_shot.items()}
                                        for m, by_shot in out["methods"].items()}
    if not results:
        raise LearnError("no image with truth is embedded in the collection; check the truth file's paths")
    return results


def _weighted_accuracy(group: EncodedGroup, vecs: np.ndarray, labels: np.ndarray, weights: np.ndarray,
                       keep: np.ndarray | None = None) -> float:
    """Accuracy on ``labels`` ``[K]`` of the ``weighted`` strategy with ``weights`` ``[P]`` on the prompts kept."""
    keep = np.ones(len(weights), bool) if keep is None else keep
    scores = scoring.option_scores("weighted", vecs, group.prompt_vecs[keep], group.owner[keep], weights[keep],
                                   group.baseline_vecs)
    return round(float((scores.argmax(axis=1) == labels).mean()), 4)


DROP_BELOW = 0.1  # a prompt whose fitted weight ends below this share of its option's largest is dropped


def write_tuned_prompt_set(collection: Collection, groups: Sequence[str] | None, prompt_set: PromptSet | None,
                           out: Path) -> dict:
    """Write a new version of the prompt set with per-prompt weights fitted on the reviews.

    For the ``weighted`` strategy (``label --prompt-set OUT --strategy weighted``); prompts the
    reviews say hurt are dropped (always keeping one per option). Readable and reusable on
    another collection, unlike a stored fit. Returns ``{"path", "version", "groups": {group:
    {"reviews", "prompts", "dropped", "accuracy": {"before", "after"}}}}`` (accuracy on the reviews).
    """
    scale = logit_scale(collection)
    with collection.session() as s:
        model_id = collection.models.require_id(s)
        known = label_groups(s)
        base = prompt_set or next((p for p in (prompt_set_of_labels(s, g) for g in (groups or known)) if p), None)
    if base is None:
        raise LearnError("no labels yet: run `manage.py label --prompt-set FILE` first, then review some")
    names = [g for g in (groups or base.groups) if g in base.groups and len(base.groups[g].options) >= 2]
    encoded = encode_groups(collection, base, names)
    data = yaml.safe_load(base.source)
    summary: dict[str, dict] = {}
    for name in names:
        group = encoded[name]
        with collection.session() as s:
            found = reviews(s, name, group.option_names)
            image_ids, vecs = collection.vectors.read(s, found.image_ids, model_id=model_id)
        labels = found.labels[np.searchsorted(found.image_ids, image_ids)]
        if len(labels) < fewshot.MIN_REVIEWS or len(np.unique(labels)) < 2:
            continue
        weights = fewshot.fit_prompt_weights(vecs, labels, group.prompt_vecs, group.owner, group.weights, scale)
        keep = np.ones(len(weights), bool)
        for o in range(len(group.option_names)):
            mine = np.flatnonzero(group.owner == o)
            keep[mine] = weights[mine] >= DROP_BELOW * weights[mine].max()

        raw_options = data["groups"][name]["options"]
        for o, option in enumerate(group.group.options):
            raw = raw_options[option.name]
            raw = dict(raw) if isinstance(raw, dict) else {}
            mine = [p for p in np.flatnonzero(group.owner == o) if keep[p]]
            raw["prompts"] = [{"text": group.prompt_texts[p], "weight": round(float(weights[p]), 3)} for p in mine]
            raw["templates"] = []  # the ensemble is exactly the fitted prompts
            raw_options[option.name] = raw
        summary[name] = {"reviews": len(labels), "prompts": int(keep.sum()), "dropped": int((~keep).sum()),
                         "accuracy": {"before": _weighted_accuracy(group, vecs, labels, group.weights),
                                      "after": _weighted_accuracy(group, vecs, labels, weights, keep)}}
    if not summary:
        raise LearnError("no group has enough reviews to fit prompt weights "
                         f"(at least {fewshot.MIN_REVIEWS} of two or more options)")
    data["version"] = bump_version(data.get("version"))
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    parse_prompt_set(yaml.safe_load(text), str(out), text, "")  # raises on anything label would refuse
    write_atomically(out, text)
    return {"path": str(out), "version": data["version"], "groups": summary}
