"""Prompts found from reviews (``manage.py learn --search-prompts``): a readable prompt set out.

Gathers each group's reviews and the candidate prompts, encodes the candidates once per model
through the catalog's text cache, runs :mod:`labeler.core.prompt_search`, and writes a new
version of the prompt set whose searched groups list the chosen prompts as plain strings, with a
comment above each group: the reviews used, the cross-validated accuracy before and after, the
date. Labeling with that file alone, zero-shot, carries what the reviews taught. Never reads a
truth file.

Candidates: the prompt set's own prompts of every group (colour's "a red object" can serve
palette's "warm"), the shipped generic templates filled with every group's option names, every
attribute option put before every concept option ("a red hammer"), and a user's vocabulary file.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import yaml

from ..collection import Collection
from ..core import fewshot, prompt_search
from ..core.prompts import PromptSet, bump_version, parse_prompt_set
from ..files import write_atomically
from ..store.stats import label_groups
from .bulk import logit_scale
from .candidates import (Candidates, candidate_texts, encode_candidates, read_vocabulary, related_ensembles,
                         starting_ensembles)
from .learning import LearnError, prompt_set_of_labels, reviews

def search_group(image_vecs: np.ndarray, labels: np.ndarray, candidates: Candidates, prompt_set: PromptSet,
                 group_name: str, scale: float) -> dict:
    """Search one group's ensembles from its reviews ``[K, D]``/``[K]``; the report, with ``prompts``."""
    group = prompt_set.groups[group_name]
    start = starting_ensembles(candidates, group)
    chosen, cv = prompt_search.choose(image_vecs, labels, candidates.vecs, start, scale, candidates.families,
                                      related_ensembles(candidates, prompt_set, group_name))
    adopted = cv.better()
    report = _report(image_vecs, labels, candidates, group, start, chosen, cv)
    for entry in report["options"].values():
        entry.pop("cv_accuracy")
        entry.pop("changed")
        entry["was"] = entry.pop("current")
    return {**report, "adopted": bool(adopted),
            "note": "" if adopted else "the searched prompts did not surely beat the prompt set's on held-out "
                                       "reviews: kept the prompt set's"}


def _report(X: np.ndarray, y: np.ndarray, candidates: Candidates, group, start: list[list[int]],
            members: list[list[int]], cv: prompt_search.CrossValidation) -> dict:
    """A group's search report: reviews, accuracy before and after (cross-validated and on the
    reviews), and per option its prompts (``members``), the set's (``current``), and its gain."""
    right_before = _right(X, y, candidates.vecs, start)
    options = {}
    for o, option in enumerate(group.options):
        alone = [list(m) for m in start]
        alone[o] = list(members[o])
        mine = y == o
        options[option.name] = {
            "reviews": int(mine.sum()),
            "prompts": [candidates.texts[i] for i in members[o]],
            "current": [p.text for p in option.prompts],
            "changed": sorted(members[o]) != sorted(start[o]),
            # reviews right with only this option's new prompts, against the prompt set's
            "gain": _right(X, y, candidates.vecs, alone) - right_before,
            # held-out accuracy on this option's reviews, before and after the search
            "cv_accuracy": ({"before": round(float(cv.before[mine].mean()), 4),
                             "after": round(float(cv.after[mine].mean()), 4)} if mine.any() else None),
        }
    return {"reviews": int(len(y)), "options_reviewed": int((np.bincount(y, minlength=len(start)) > 0).sum()),
            "cv_accuracy": cv.accuracy, "source": cv.source,
            "accuracy": {"before": round(right_before / len(y), 4),
                         "after": round(_right(X, y, candidates.vecs, members) / len(y), 4)},
            "options": options}


def _right(X: np.ndarray, y: np.ndarray, C: np.ndarray, members: list[list[int]]) -> int:
    return int((prompt_search._scores(np.asarray(X, np.float64), np.asarray(C, np.float64), members).argmax(axis=1)
                == y).sum())


def group_reviews(collection: Collection, prompt_set: PromptSet, name: str, model_id: int) -> tuple[np.ndarray, np.ndarray]:
    """The group's reviewed images' vectors ``[K, D]`` and option indices ``[K]``, by image id."""
    with collection.session() as s:
        got = reviews(s, name, prompt_set.groups[name].option_names)
        image_ids, vecs = collection.vectors.read(s, got.image_ids, model_id=model_id)
    return vecs, got.labels[np.searchsorted(got.image_ids, image_ids)]


def _too_few(name: str, labels: np.ndarray) -> LearnError:
    return LearnError(f"group '{name}' has reviews of {len(np.unique(labels))} option(s); the search "
                      "needs reviews of at least 2 (accept or correct some in the review UI)")


def check_suggestable(collection: Collection, prompt_set: PromptSet, group: str) -> None:
    """Raise :class:`LearnError` when :func:`suggest` could not run on ``group`` (not in the set,
    reviews of fewer than two options): cheap, so a page can refuse before starting a job."""
    if group not in prompt_set.groups:
        raise LearnError(f"group '{group}' is not in prompt set '{prompt_set.name}'")
    with collection.session() as s:
        labels = reviews(s, group, prompt_set.groups[group].option_names).labels
    if len(np.unique(labels)) < 2:
        raise _too_few(group, labels)


def suggest(collection: Collection, prompt_set: PromptSet, group: str,
            progress: Callable[[int, int, str], None] | None = None) -> dict:
    """The prompt lab's "Suggest prompts from reviews" for one group; writes nothing.

    Runs the same search as ``learn --search-prompts`` and reports the searched prompts of every
    option *whether or not* they surely beat the set's (the admin decides; ``better`` says what
    the two-sigma test on held-out reviews found). ``progress(done, total, message)`` follows the
    work: one step for the candidates, one per cross-validation fold, one for the final search.

    Returns ``{"group", "candidates", "reviews", "options_reviewed", "cv_accuracy": {"before",
    "after"}, "source", "accuracy": {"before", "after"}, "better", "options": {option: {"reviews", "prompts",
    "current", "changed", "gain", "cv_accuracy"}}}``; ``cv_accuracy`` of an option is on its own
    reviews (None when it has none). Raises :class:`LearnError` on a group with reviews of fewer
    than two options.
    """
    check_suggestable(collection, prompt_set, group)
    scale = logit_scale(collection)
    with collection.session() as s:
        model_id = collection.models.require_id(s)
    vecs, labels = group_reviews(collection, prompt_set, group, model_id)
    if len(np.unique(labels)) < 2:  # the reviewed images may have no vectors of this model
        raise _too_few(group, labels)
    folds = fewshot.fold_count(labels, fewshot.FOLDS)
    total = folds + 2
    say = progress or (lambda done, total, message: None)
    say(0, total, f"{group}: encoding the candidate prompts")
    texts, families = candidate_texts(prompt_set)
    candidates = encode_candidates(collection, texts, collection.config.max_prompt_chars, families)
    start = starting_ensembles(candidates, prompt_set.groups[group])
    head = f"{group}: searching {len(texts):,} candidate prompts from {len(labels)} reviews"
    say(1, total, f"{head}, cross-validation fold 0 of {folds}")

    def fold_done(done: int, n: int) -> None:
        say(1 + done, total, f"{head}, cross-validation fold {done} of {n}"
            + (": mapping other groups' options, then the final search" if done == n else ""))

    members, cv = prompt_search.propose(vecs, labels, candidates.vecs, start, scale, candidates.families,
                                        related_ensembles(candidates, prompt_set, group), fold_done=fold_done)
    report = _report(vecs, labels, candidates, prompt_set.groups[group], start, members, cv)
    return {"group": group, "candidates": len(texts), **report, "better": bool(cv.better())}


def search_prompt_set(collection: Collection, groups: Sequence[str] | None, prompt_set: PromptSet | None,
                      out: Path, vocabulary_file: Path | None = None, force: bool = False,
                      progress: Callable[[int], None] | None = None) -> dict:
    """Search every chosen group's ensembles from its reviews and write OUT.yaml (a new version).

    Returns ``{"path", "version", "candidates", "groups": {group: {"reviews", "options_reviewed",
    "cv_accuracy": {"before", "after"}, "source", "accuracy", "adopted", "options": {option: {"reviews",
    "prompts", "was", "gain"}}, "note"}}}``. Raises :class:`LearnError` (nothing written) on an
    existing OUT without ``force``, a bad candidates file, or a named group with reviews of fewer
    than two options.
    """
    if out.exists() and not force:
        raise LearnError(f"{out} exists; give --force to replace it, or another OUT path")
    vocabulary = read_vocabulary(vocabulary_file) if vocabulary_file is not None else []
    scale = logit_scale(collection)
    with collection.session() as s:
        model_id = collection.models.require_id(s)
        base = prompt_set
        if base is None:
            known = list(groups or label_groups(s))
            base = next((p for p in (prompt_set_of_labels(s, g) for g in known) if p), None)
    if base is None:
        raise LearnError("no labels yet: run `manage.py label --prompt-set FILE` first, then review some")
    missing = [g for g in groups or [] if g not in base.groups]
    if missing:
        raise LearnError(f"group '{missing[0]}' is not in prompt set '{base.name}' (have: {', '.join(base.groups)})")
    names = list(groups) if groups else [g for g, grp in base.groups.items() if len(grp.options) >= 2]
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in names:
        vecs, labels = group_reviews(collection, base, name, model_id)
        if len(np.unique(labels)) < 2:
            if groups:
                raise _too_few(name, labels)
            continue
        found[name] = (vecs, labels)
    if not found:
        raise LearnError("no group has reviews of two or more options: accept or correct some labels first")
    texts, families = candidate_texts(base, vocabulary)
    candidates = encode_candidates(collection, texts, collection.config.max_prompt_chars, families)
    report: dict[str, dict] = {}
    for name, (vecs, labels) in found.items():
        report[name] = search_group(vecs, labels, candidates, base, name, scale)
        if progress is not None:
            progress(1)
    text, version = render(base, report)
    parse_prompt_set(yaml.safe_load(text), str(out), text, "")  # raises on anything label would refuse
    write_atomically(out, text)
    return {"path": str(out), "version": version, "candidates": len(candidates.texts), "groups": report}


def render(base: PromptSet, report: dict[str, dict], today: dt.date | None = None) -> tuple[str, object]:
    """The new prompt set's YAML text and version: searched groups rewritten, a comment above each."""
    data = yaml.safe_load(base.source)
    data["version"] = bump_version(data.get("version"))
    for name, entry in report.items():
        if not entry["adopted"]:
            continue
        raw_options = data["groups"][name]["options"]
        for option, found in entry["options"].items():
            raw = raw_options[option]
            raw = dict(raw) if isinstance(raw, dict) else {}
            raw["prompts"] = list(found["prompts"])
            raw["templates"] = []  # the ensemble is exactly the chosen prompts
            raw_options[option] = raw
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)
    day = (today or dt.date.today()).isoformat()
    lines = text.splitlines()
    out = [f"# Written by `manage.py learn --search-prompts` from {base.name} version {base.version} on {day}.",
           "# Searched groups list the prompts chosen from reviews; label with it alone, zero-shot:",
           "#   manage.py label --prompt-set THIS.yaml --strategy mean-embedding"]
    in_groups = False
    keys = {yaml.safe_dump({name: None}).split(":")[0]: name for name in report}
    for line in lines:
        if line == "groups:":
            in_groups = True
        elif in_groups and line.startswith("  ") and not line.startswith("   ") and line.rstrip().endswith(":"):
            name = keys.get(line.strip()[:-1])
            if name is not None:
                entry = report[name]
                per_option = ", ".join(f"{o} {e['reviews']}" for o, e in entry["options"].items())
                cv = entry["cv_accuracy"]
                out.append(f"  # {name}: searched from {entry['reviews']} reviews ({per_option}) on {day}; "
                           f"cross-validated accuracy {cv['before']:.1%} -> {cv['after']:.1%}"
                           + (f" ({entry['source']}'s options mapped onto these)" if entry.get("source", "search") != "search"
                              else "") + "; "
                           + ("adopted" if entry["adopted"] else "not adopted: the prompt set's prompts kept"))
        out.append(line)
    return "\n".join(out) + "\n", data["version"]
