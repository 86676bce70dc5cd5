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
``coverage`` the mean share accepted. The region with one degree of freedom (chi2(1), the cutoff
before issue 24's round 3) is measured in the same run as the baseline, and a 90% region for both
parameters (chi2(2).ppf(0.90)) as the step between.

    PYTHONPATH=. .venv/bin/python bench/bench_trust_resample.py /tmp/bench-trust-XXXX [--draws 40]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sqlite3
import tempfile
from pathlib import Path

import numpy as np

import labeler
from labeler.core import trust as stats
from labeler.review import trust

CUTOFFS = {"chi2(2) 95% (now)": stats.REGION_CHI2, "chi2(2) 90%": 4.605170185988091,
           "chi2(1) 90% (before)": 2.705543454095404}


def evidence(work: Path) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """``{group: (confidence [N], right [N], random reviews)}`` of a copy of ``work``'s home."""
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
        for group in ("concept", "color", "material"):
            ev = trust.gather(collection, group)
            out[group] = (ev.confidence, np.array([right[int(i)] for i in ev.label_ids]), len(ev.review_confidence))
    return out


def draws(confidence: np.ndarray, right: np.ndarray, reviews: int, count: int, target: float, cutoff: float,
          seed: int) -> dict:
    rng = np.random.default_rng(seed)
    kept = stats.REGION_CHI2
    stats.REGION_CHI2 = cutoff
    try:
        over = below = refused = 0
        coverage = []
        for _ in range(count):
            pick = rng.choice(len(confidence), reviews, replace=False)
            choice = stats.choose_threshold(confidence, confidence[pick], right[pick], target)
            if not choice.found:
                refused += 1
                coverage.append(0.0)
                continue
            accepted = confidence >= choice.curve.thresholds[choice.index]
            delivered = right[accepted].mean()
            over += delivered < choice.curve.lower[choice.index]
            below += delivered < 0.985
            coverage.append(accepted.mean())
    finally:
        stats.REGION_CHI2 = kept
    return {"overstated": round(over / count, 3), "below_0.985": round(below / count, 3),
            "refused": round(refused / count, 3), "coverage": round(float(np.mean(coverage)), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work", type=Path, nargs="+", help="bench_trust.py --work folders")
    ap.add_argument("--draws", type=int, default=40)
    ap.add_argument("--reviews", type=int, default=None, help="reviews per draw [default: the group's random reviews]")
    ap.add_argument("--min-precision", type=float, default=0.99)
    args = ap.parse_args()
    for work in args.work:
        for group, (confidence, right, reviews) in evidence(work).items():
            k = args.reviews or reviews
            row = {"work": work.name, "group": group, "reviews": k,
                   **{name: draws(confidence, right, k, args.draws, args.min_precision, cutoff, seed=1)
                      for name, cutoff in CUTOFFS.items()}}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
