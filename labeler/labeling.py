"""Bulk auto-labeling: score every embedded image against every group of a prompt set.

The maths is :mod:`labeler.scoring` on whole chunks of stored vectors; the writes are bulk
inserts and bulk updates that compare before writing, so a rerun changes nothing and a label a
human reviewed is never touched.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from sqlalchemy import and_, bindparam, insert, select, update
from sqlalchemy.orm import Session

from . import fewshot, scoring
from .catalog import Fit, Label, Model, PromptSetRecord, utcnow
from .collection import Collection
from .errors import LabelerError, NotFound
from .prompts import Group, PromptSet, PromptSetError

# On the demo world (manage.py evaluate) it gives the most confidence on the truth and the lowest ECE.
DEFAULT_STRATEGY = "mean-embedding"
CHUNK_ROWS = 50_000
SCORE_DIGITS = 4  # stored per-option scores; enough to explain, small enough to store compactly


@dataclass(frozen=True)
class EncodedGroup:
    """A group's prompts as vectors: prompts stored option by option."""

    group: Group
    prompt_texts: list[str]
    prompt_vecs: np.ndarray  # [P, D]
    owner: np.ndarray  # [P] option index of each prompt
    weights: np.ndarray  # [P]
    baseline_vecs: np.ndarray  # [O, D]
    option_thresholds: np.ndarray  # [O], NaN where the option has none

    @property
    def option_names(self) -> list[str]:
        return self.group.option_names

    def scores(self, strategy: str, image_vecs: np.ndarray) -> np.ndarray:
        """Raw per-option cosines ``[N, O]``."""
        return scoring.option_scores(strategy, image_vecs, self.prompt_vecs, self.owner, self.weights,
                                     self.baseline_vecs)

    def decide(self, strategy: str, image_vecs: np.ndarray, logit_scale: float
               ) -> tuple[np.ndarray, np.ndarray, scoring.Decision]:
        """(cosines ``[N, O]``, confidence ``[N, O]``, decision) for ``image_vecs`` ``[N, D]``."""
        cosines = self.scores(strategy, image_vecs)
        confidence = scoring.softmax_confidence(cosines, logit_scale)
        decision = scoring.decide(confidence, self.option_thresholds, self.group.none_threshold)
        return cosines, confidence, decision

    def answer(self, choice: int) -> str | None:
        return None if choice == scoring.NONE else self.option_names[choice]

    def answer_key(self, choice: int) -> str:
        """The name an answer is counted under; none of these counts under the group's none name."""
        if choice == scoring.NONE:
            return self.group.none_name or "none"
        return self.option_names[choice]


def check_request(prompt_set: PromptSet, strategy: str, groups: Sequence[str] | None) -> list[str]:
    """The groups to label; raises before anything touches the catalog."""
    if strategy not in scoring.STRATEGIES:
        raise LabelerError(f"unknown strategy '{strategy}' (known: {', '.join(scoring.STRATEGIES)})")
    names = list(groups) if groups else list(prompt_set.groups)
    missing = [g for g in names if g not in prompt_set.groups]
    if missing:
        raise PromptSetError([f"{prompt_set.path}: groups: no group '{g}' (have: {', '.join(prompt_set.groups)})"
                              for g in missing])
    return list(dict.fromkeys(names))


def encode_groups(collection: Collection, prompt_set: PromptSet, groups: Sequence[str] | None = None
                  ) -> dict[str, EncodedGroup]:
    """Every prompt of the chosen groups as vectors, through the collection's per-model text cache."""
    names = list(groups) if groups else list(prompt_set.groups)
    texts: list[str] = []
    for name in names:
        group = prompt_set.groups[name]
        texts += [p.text for o in group.options for p in o.prompts]
        texts += [group.baseline_prompt(o) for o in group.options]
    unique = list(dict.fromkeys(texts))
    vectors = dict(zip(unique, collection.vectors.text_vectors(unique)))
    encoded = {}
    for name in names:
        group = prompt_set.groups[name]
        prompt_texts = [p.text for o in group.options for p in o.prompts]
        encoded[name] = EncodedGroup(
            group=group,
            prompt_texts=prompt_texts,
            prompt_vecs=np.stack([vectors[t] for t in prompt_texts]),
            owner=np.array([i for i, o in enumerate(group.options) for _ in o.prompts], np.int64),
            weights=np.array([p.weight for o in group.options for p in o.prompts], np.float32),
            baseline_vecs=np.stack([vectors[group.baseline_prompt(o)] for o in group.options]),
            option_thresholds=np.array([np.nan if o.threshold is None else o.threshold
                                        for o in group.options], np.float64),
        )
    return encoded


def logit_scale(collection: Collection) -> float:
    """The model's logit scale, from the catalog (so labeling needs no weights once prompts are cached)."""
    with collection.session() as s:
        model = s.get(Model, collection.models.require_id())
        return float(model.logit_scale)


def record_prompt_set(session: Session, prompt_set: PromptSet) -> int:
    """The catalog row of this exact prompt set content; created on first use."""
    row = session.scalar(select(PromptSetRecord).where(PromptSetRecord.name == prompt_set.name,
                                                       PromptSetRecord.content_hash == prompt_set.content_hash))
    if row is None:
        row = PromptSetRecord(name=prompt_set.name, version=prompt_set.version,
                              content_hash=prompt_set.content_hash, source=prompt_set.source,
                              path=prompt_set.path)
        session.add(row)
        session.flush()
    return row.id


def _scores_json(names: list[str], cosines: np.ndarray, confidence: np.ndarray) -> list[dict]:
    """Per image ``{option: {"cosine", "confidence"}}``, rounded so a rerun compares equal."""
    cos = np.round(cosines.astype(np.float64), SCORE_DIGITS).tolist()
    conf = np.round(confidence, SCORE_DIGITS).tolist()
    return [{name: {"cosine": c, "confidence": p} for name, c, p in zip(names, cos_row, conf_row)}
            for cos_row, conf_row in zip(cos, conf)]


@dataclass
class LabelReport:
    labeled: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    kept_reviewed: int = 0
    images: int = 0
    groups: dict[str, Counter] = field(default_factory=dict)
    seconds: float = 0.0
    strategy: str = ""
    prompt_set: dict = field(default_factory=dict)
    methods: dict[str, dict] = field(default_factory=dict)  # {group: {"strategy", "fit_id"}}

    def to_dict(self) -> dict:
        return {"labeled": self.labeled, "kept_reviewed": self.kept_reviewed,
                "groups": {g: dict(sorted(c.items())) for g, c in self.groups.items()},
                "inserted": self.inserted, "updated": self.updated, "unchanged": self.unchanged,
                "images": self.images, "strategy": self.strategy, "prompt_set": self.prompt_set,
                "methods": self.methods,
                "seconds": round(self.seconds, 3)}


_COMPARED = ("value", "predicted", "confidence", "margin", "strategy", "fit_id", "priority", "scores",
             "prompt_set_id")
_EXACT = ("value", "predicted", "strategy", "fit_id", "priority", "prompt_set_id")
# BLAS sums in a different order for a different chunk size; last-bit noise is not a change.
_TOLERANCE = 2 * 10 ** -SCORE_DIGITS


def _close(a: float | None, b: float | None) -> bool:
    return a == b or (a is not None and b is not None and abs(a - b) <= _TOLERANCE)


def _same(old: dict, new: dict) -> bool:
    """Whether a stored label already says what the new proposal says."""
    if any(old[k] != new[k] for k in _EXACT):
        return False
    if not (_close(old["confidence"], new["confidence"]) and _close(old["margin"], new["margin"])):
        return False
    old_scores, new_scores = old["scores"] or {}, new["scores"]
    if old_scores.keys() != new_scores.keys():
        return False
    return all(_close(old_scores[o].get(k), new_scores[o][k]) for o in new_scores for k in new_scores[o])


def current_fit(session: Session, model_id: int, group: str, prompt_set_id: int) -> Fit | None:
    """The fit a group proposes with: its newest for this model and this exact prompt-set version."""
    return session.scalar(select(Fit).where(Fit.model_id == model_id, Fit.group == group,
                                            Fit.prompt_set_id == prompt_set_id)
                          .order_by(Fit.id.desc()).limit(1))


FIT_PREFIX = "fit:"  # a label's strategy when a fit from reviews proposed it: "fit:<method>"


def cosine_strategy(label_strategy: str | None) -> str:
    """The zero-shot strategy whose prompt cosines explain a label: a fit keeps the default's."""
    if not label_strategy or label_strategy.startswith(FIT_PREFIX):
        return DEFAULT_STRATEGY
    return label_strategy


@dataclass(frozen=True)
class Proposer:
    """How one group proposes: a zero-shot strategy, or a fit learned from its reviews."""

    strategy: str  # a zero-shot strategy, or "fit:<method>"
    fit_id: int | None = None
    classifier: fewshot.Classifier | None = None

    def decide(self, group: EncodedGroup, image_vecs: np.ndarray, logit_scale: float
               ) -> tuple[np.ndarray, np.ndarray, scoring.Decision]:
        """(cosines ``[N, O]``, confidence ``[N, O]``, decision); cosines stay the prompts' own."""
        if self.classifier is None:
            return group.decide(self.strategy, image_vecs, logit_scale)
        cosines = group.scores(DEFAULT_STRATEGY, image_vecs)
        confidence = self.classifier.confidence(image_vecs)
        return cosines, confidence, scoring.decide(confidence, group.option_thresholds, group.group.none_threshold)


def proposers(session: Session, model_id: int, prompt_set_id: int, names: Sequence[str],
              strategy: str | None) -> dict[str, Proposer]:
    """A named ``strategy`` forces zero-shot; None uses each group's fit where it has one."""
    out = {}
    for name in names:
        fit = None if strategy else current_fit(session, model_id, name, prompt_set_id)
        out[name] = (Proposer(f"{FIT_PREFIX}{fit.method}", fit.id, fewshot.Classifier.from_bytes(fit.method, fit.classifier))
                     if fit is not None else Proposer(strategy or DEFAULT_STRATEGY))
    return out


COLD_START_SAMPLE = 20_000


def cold_start_priority(collection: Collection, model_id: int, encoded: dict[str, EncodedGroup],
                        groups: Sequence[str]) -> dict[str, dict[int, int]]:
    """``{group: {image_id: rank}}``: for groups nobody reviewed yet, typical images to review first.

    Two k-means clusters per option over a sample of the collection; the most typical image of
    each goes to the front of the "most informative" queue (see :func:`fewshot.typical_representatives`).
    """
    if not groups:
        return {}
    ids = collection.vectors.ids(model_id)
    if len(ids) > COLD_START_SAMPLE:
        ids = np.sort(np.random.default_rng(0).choice(ids, COLD_START_SAMPLE, replace=False))
    ids, vecs = collection.vectors.read(ids, model_id=model_id)
    out = {}
    for name in groups:
        reps = fewshot.typical_representatives(vecs, 2 * len(encoded[name].option_names), seed=0)
        out[name] = {int(ids[r]): rank for rank, r in enumerate(reps)}
    return out


def label_collection(collection: Collection, prompt_set: PromptSet, strategy: str | None = None,
                     groups: Sequence[str] | None = None, chunk_rows: int = CHUNK_ROWS,
                     progress=None) -> LabelReport:
    """Write one proposed ``Label`` per embedded image and group; reviewed labels are kept.

    ``strategy`` None: each group proposes with what it learned from its reviews (``manage.py
    learn``) when it has a fit for this prompt-set version, else with :data:`DEFAULT_STRATEGY`;
    a named strategy forces that zero-shot strategy. ``progress(n)`` is called with the number
    of images finished in each chunk.
    """
    started = time.perf_counter()
    names = check_request(prompt_set, strategy or DEFAULT_STRATEGY, groups)
    model_id = collection.models.require_id()
    encoded = encode_groups(collection, prompt_set, names)
    scale = logit_scale(collection)
    report = LabelReport(groups={g: Counter() for g in names}, strategy=strategy or DEFAULT_STRATEGY)
    with collection.session() as s:
        prompt_set_id = record_prompt_set(s, prompt_set)
        how = proposers(s, model_id, prompt_set_id, names, strategy)
        reviewed = set(s.scalars(select(Label.group).where(Label.group.in_(names), Label.status != "proposed")
                                 .distinct()))
    report.methods = {name: {"strategy": p.strategy, "fit_id": p.fit_id} for name, p in how.items()}
    priority = cold_start_priority(collection, model_id, encoded, [g for g in names if g not in reviewed])
    report.prompt_set = {"id": prompt_set_id, "name": prompt_set.name, "version": prompt_set.version,
                         "content_hash": prompt_set.content_hash}
    for ids, vecs in collection.vectors.chunks(model_id, chunk_rows):
        proposals = {}
        for name in names:
            group = encoded[name]
            cosines, confidence, decision = how[name].decide(group, vecs, scale)
            ranks = priority.get(name, {})
            proposals[name] = (group, _scores_json(group.option_names, cosines, confidence),
                               np.round(decision.confidence, 6).tolist(), np.round(decision.margin, 6).tolist(),
                               decision.choice.tolist(), how[name], [ranks.get(i) for i in ids.tolist()])
        with collection.session() as s:
            _write_chunk(s, ids, proposals, prompt_set_id, report)
        report.images += len(ids)
        if progress is not None:
            progress(len(ids))
    report.seconds = time.perf_counter() - started
    return report


def _write_chunk(session: Session, ids: np.ndarray, proposals: dict, prompt_set_id: int,
                 report: LabelReport) -> None:
    table = Label.__table__
    lo, hi = int(ids[0]), int(ids[-1])
    existing: dict[tuple[int, str], dict] = {}
    query = select(table).where(table.c.image_id.between(lo, hi), table.c.group.in_(list(proposals)))
    for row in session.execute(query).mappings():
        existing[(row["image_id"], row["group"])] = dict(row)
    now = utcnow()
    inserts, updates = [], []
    for name, (group, scores, confidence, margin, choices, proposer, priority) in proposals.items():
        counts = report.groups[name]
        for i, image_id in enumerate(ids.tolist()):
            answer = group.answer(choices[i])
            new = {"value": answer, "predicted": answer, "confidence": confidence[i], "margin": margin[i],
                   "strategy": proposer.strategy, "fit_id": proposer.fit_id, "priority": priority[i],
                   "scores": scores[i], "prompt_set_id": prompt_set_id}
            old = existing.get((image_id, name))
            if old is not None and old["status"] != "proposed":
                report.kept_reviewed += 1
                continue
            counts[group.answer_key(choices[i])] += 1
            report.labeled += 1
            if old is None:
                inserts.append({**new, "image_id": image_id, "group": name, "status": "proposed",
                                "version": 1, "updated_at": now})
            elif not _same(old, new):
                updates.append({**new, "b_id": old["id"], "b_version": old["version"],
                                "version": old["version"] + 1, "updated_at": now})
            else:
                report.unchanged += 1
    if inserts:
        session.execute(insert(table), inserts)
        report.inserted += len(inserts)
    if updates:
        # Only a still-proposed row at the version we read: a review made meanwhile wins.
        statement = (update(table)
                     .where(and_(table.c.id == bindparam("b_id"), table.c.version == bindparam("b_version"),
                                 table.c.status == "proposed"))
                     .values({k: bindparam(k) for k in (*_COMPARED, "version", "updated_at")}))
        result = session.connection().execute(statement, updates)
        changed = result.rowcount if result.rowcount is not None and result.rowcount >= 0 else len(updates)
        report.updated += changed
        report.kept_reviewed += len(updates) - changed
        report.labeled -= len(updates) - changed


def explain(collection: Collection, image_id: int, prompt_set: PromptSet, strategy: str = DEFAULT_STRATEGY,
            groups: Sequence[str] | None = None) -> dict:
    """Why an image got its labels: per group → option → per-prompt cosines, plus the option scores.

    Returns ``{group: {"answer", "confidence", "margin", "strategy", "options": {option:
    {"cosine", "confidence", "baseline": {"text", "cosine"}, "prompts": [{"text", "weight", "cosine"}]}}}}``.
    """
    names = check_request(prompt_set, strategy, groups)
    ids, vecs = collection.vectors.read([image_id])
    if len(ids) == 0:
        raise NotFound(f"image {image_id} has no stored vector for model '{collection.models.spec()}'")
    encoded = encode_groups(collection, prompt_set, names)
    scale = logit_scale(collection)
    out = {}
    for name in names:
        group = encoded[name]
        cosines, confidence, decision = group.decide(strategy, vecs, scale)
        per_prompt = scoring.prompt_cosines(vecs, group.prompt_vecs)[0]
        baseline = scoring.prompt_cosines(vecs, group.baseline_vecs)[0]
        options = {}
        for o, option in enumerate(group.group.options):
            rows = np.flatnonzero(group.owner == o)
            options[option.name] = {
                "cosine": float(cosines[0, o]), "confidence": float(confidence[0, o]),
                "baseline": {"text": group.group.baseline_prompt(option), "cosine": float(baseline[o])},
                "prompts": [{"text": group.prompt_texts[p], "weight": float(group.weights[p]),
                             "cosine": float(per_prompt[p])} for p in rows],
            }
        choice = int(decision.choice[0])
        out[name] = {"answer": group.answer(choice), "confidence": float(decision.confidence[0]),
                     "margin": float(decision.margin[0]), "strategy": strategy, "options": options}
    return out
