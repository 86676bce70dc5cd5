#!/usr/bin/env python
"""Is the stated bound honest? Resample the random reviews from a real world and count how often it lies.

Takes a home that ``bench/bench_trust.py --work DIR`` left (a real world, its fit and proposals),
copies it, returns the copy's auto labels to proposed (``accept --undo``), and gathers each group's
proposals as ``accept`` does. Then truth.csv says which proposals are right, and ``--draws`` times a
uniform sample of ``--reviews`` proposals (default: as many as the group's random reviews) stands in
for the random reviews: their confidence and whether they are right. For each draw ``accept``'s
choice is made at ``--min-precision`` and scored: ``overstated`` is the share of draws whose stated
lower bound is above the precision the accepted set delivers (a 95% bound may do so in at most 5%),
``below`` the share delivering less than 0.985, ``refused`` the share that certify nothing, and
``coverage`` the mean share accepted. Rules measured in the same run:

* ``chi2(2) 95% (now)``: what ``accept`` does (the region for both Platt parameters);
* ``fixed sequence``: "Learn then Test" (Angelopoulos et al. 2021): thresholds fixed before the
  reviews are seen (the quantiles of the proposals' confidences), tested from the most confident
  down, each with a one-sided 95% profile-likelihood test of its set's precision (2 delta loglik <=
  chi2(1).ppf(0.90) = 2.71), stopping at the first failure. ``differs`` counts the draws where it
  accepted another set than "the lowest threshold whose 1-D bound passes" (the cutoff before
  issue 24's round 3): the bound only falls as the threshold falls, so the two are one rule.

``--synthetic``: each proposal's outcome is drawn afresh per draw from the Platt fit to the truth of
all proposals, so the calibration model is right by construction. What a rule overstates there is
its own small-sample error; what it overstates beyond that on the real outcomes is the model's
misspecification.

    PYTHONPATH=. .venv/bin/python bench/bench_trust_resample.py /tmp/bench-trust-XXXX [--draws 40] [--synthetic]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import labeler
from labeler.core import trust as stats
from labeler.review import trust

PROFILE_1D = 2.705543454095404  # chi2(1).ppf(0.90): a one-sided 95% profile-likelihood test of one quantity
GROUPS = ("concept", "color", "material")


@dataclass
class Group:
    """A group's proposals ``[N]`` with their truth, and the real random reviews ``[K]`` accept used."""

    confidence: np.ndarray
    right: np.ndarray
    unreviewed: int
    review_confidence: np.ndarray
    review_correct: np.ndarray


def evidence(work: Path) -> dict[str, Group]:
    """``{group: Group}`` of a copy of ``work``'s home (its auto labels returned to proposed)."""
    truth = {r["file"]: r for r in csv.DictReader(open(work / "world" / "truth.csv", newline=""))}
    with tempfile.TemporaryDirectory(prefix="trust-resample-") as tmp:
        home = Path(tmp) / "home"
        shutil.copytree(work / "home", home)
        collection = labeler.open(home, model="labeler-tiny").collection()
        for run in trust.runs(collection):
            if run["undone_at"] is None:
                trust.undo(collection, run["run"])
        con = sqlite3.connect(home / "catalog.db")
        rows = con.execute('SELECT l.id, l."group", l.value, f.path FROM labels l '
                           "JOIN image_files f ON f.image_id = l.image_id").fetchall()
        con.close()
        right = {i: truth[Path(path).name][group] == value for i, group, value, path in rows}
        out = {}
        for group in GROUPS:
            ev = trust.gather(collection, group)
            out[group] = Group(ev.confidence, np.array([right[int(i)] for i in ev.label_ids], bool), ev.unreviewed,
                               ev.review_confidence, ev.review_correct)
    return out


def with_cutoff(cutoff: float, fn, *args):
    """``fn(*args)`` with the calibration region's cutoff set to ``cutoff``."""
    kept = stats.REGION_CHI2
    stats.REGION_CHI2 = cutoff
    try:
        return fn(*args)
    finally:
        stats.REGION_CHI2 = kept


def fixed_sequence(confidence: np.ndarray, review_confidence: np.ndarray, review_correct: np.ndarray,
                   target: float) -> tuple[stats.Curve, int | None]:
    """Learn then Test: the curve's thresholds (quantiles of the proposals, fixed before the reviews),
    from the first with enough reviews above it down, each tested on its own at one-sided 95%; the
    last one before the first failure (None: the first fails)."""
    curve = with_cutoff(PROFILE_1D, stats.precision_curve, confidence, review_confidence, review_correct)
    start = np.flatnonzero(curve.reviews_above >= stats.MIN_REVIEWS_ABOVE)
    chosen = None
    for i in range(int(start[0]) if len(start) else len(curve.thresholds), len(curve.thresholds)):
        if curve.lower[i] < target:
            break
        chosen = i
    return curve, chosen


def lowest_passing(confidence, review_confidence, review_correct, target, cutoff):
    choice = with_cutoff(cutoff, stats.choose_threshold, confidence, review_confidence, review_correct, target)
    return choice.curve, choice.index


RULES = {"chi2(2) 95% (now)": lambda c, rc, rk, t: lowest_passing(c, rc, rk, t, stats.REGION_CHI2),
         "fixed sequence, 1-D 95% per test": fixed_sequence}


def platt_of_truth(group: Group) -> np.ndarray:
    """``[N]``: each proposal's chance of being right under the Platt fit to the truth of all proposals."""
    loglik = stats.platt_log_likelihood(group.confidence, group.right)
    ia, ib = np.unravel_index(np.argmax(loglik), loglik.shape)
    return 1.0 / (1.0 + np.exp(-(stats.A_GRID[ia] + stats.B_GRID[ib] * stats.log_odds(group.confidence))))


def draws(group: Group, reviews: int, count: int, target: float, rule, synthetic: bool, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    confidence = group.confidence
    chance = platt_of_truth(group) if synthetic else None
    over = below = refused = differs = 0
    coverage = []
    for _ in range(count):
        right = rng.random(len(confidence)) < chance if synthetic else group.right
        pick = rng.choice(len(confidence), reviews, replace=False)
        curve, index = rule(confidence, confidence[pick], right[pick], target)
        if rule is fixed_sequence:  # the same set? (two thresholds may accept the same proposals)
            other, at = lowest_passing(confidence, confidence[pick], right[pick], target, PROFILE_1D)
            differs += int((None if index is None else int(curve.accepted[index]))
                           != (None if at is None else int(other.accepted[at])))
        if index is None:
            refused += 1
            coverage.append(0.0)
            continue
        accepted = confidence >= curve.thresholds[index]
        delivered = right[accepted].mean()
        over += delivered < curve.lower[index]
        below += delivered < 0.985
        coverage.append(accepted.sum() / group.unreviewed)
    out = {"overstated": round(over / count, 3), "below_0.985": round(below / count, 3),
           "refused": round(refused / count, 3), "coverage": round(float(np.mean(coverage)), 3)}
    if rule is fixed_sequence:
        out["differs"] = differs
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work", type=Path, nargs="+", help="bench_trust.py --work folders")
    ap.add_argument("--draws", type=int, default=40)
    ap.add_argument("--reviews", type=int, default=None, help="reviews per draw [default: the group's random reviews]")
    ap.add_argument("--min-precision", type=float, default=0.99)
    ap.add_argument("--synthetic", action="store_true", help="outcomes drawn from the Platt fit to the truth")
    args = ap.parse_args()
    for work in args.work:
        for name, group in evidence(work).items():
            k = args.reviews or len(group.review_confidence)
            row = {"work": work.name, "group": name, "reviews": k, "synthetic": args.synthetic,
                   **{rule_name: draws(group, k, args.draws, args.min_precision, rule, args.synthetic, seed=1)
                      for rule_name, rule in RULES.items()}}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
