#!/usr/bin/env python
"""The trusted-labels reference run (issue 24), through the real CLI, scored against truth.csv.

A fresh demo world of a seed the product never saw; a random sample of ``--per-option`` images
per option of concept, color and material, their true values imported with ``import-labels``
(the reviewer stands in by the truth); ``learn``; ``label``; ``accept --min-precision P`` per
group. Then, and only here, truth.csv scores what ``accept`` did: the true precision of the auto
labels, their coverage (share of the unreviewed labels accepted), and the coverage an oracle that
knew the truth could reach at the same precision with the same confidences.

    .venv/bin/python bench/bench_trust.py --seed 4242 [--images 3000] [--per-option 30] [--json]

``--work DIR --again``: reuse the home a run left in DIR (its reviews, fit and proposals), undo its
accept runs through the CLI and accept again with this checkout's code (a change to the estimate,
measured on the same evidence).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GROUPS = ("concept", "color", "material")


def manage(home: Path, *args: str, expect: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "manage.py"), "--home", str(home), "--model", "labeler-tiny", *args]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode not in expect:
        raise SystemExit(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done


def oracle_coverage(confidence: np.ndarray, correct: np.ndarray, target: float) -> float:
    """The largest share accepted by one confidence threshold whose true precision is >= target."""
    order = np.argsort(-confidence, kind="stable")
    right = np.cumsum(correct[order])
    precision = right / np.arange(1, len(order) + 1)
    ok = np.flatnonzero(precision >= target)
    return float((ok.max() + 1) / len(order)) if len(ok) else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--per-option", type=int, default=30)
    ap.add_argument("--min-precision", type=float, default=0.99)
    ap.add_argument("--work", type=Path, default=None, help="Keep the world and home here.")
    ap.add_argument("--again", action="store_true",
                    help="With --work: undo the home's accept runs and accept again (same reviews and fit).")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-trust-"))
    world, home = work / "world", work / "home"
    timings = {}
    if args.again:
        if args.work is None or not (home / "catalog.db").exists():
            raise SystemExit("--again needs --work DIR holding a home from an earlier run")
        runs = json.loads(manage(home, "accept", "--runs", "--json").stdout)
        for run in runs:
            if run["undone_at"] is None:
                manage(home, "accept", "--undo", str(run["run"]), "--json")
        with open(world / "truth.csv", newline="") as fh:
            truth = list(csv.DictReader(fh))
        return score(args, home, truth, accept_all(args, home), {}, work)
    t = time.perf_counter()
    if not (world / "truth.csv").exists():
        manage(home, "demo-images", str(world), "--count", str(args.images), "--seed", str(args.seed), "--json")
    manage(home, "index", str(world), "--json")
    manage(home, "label", "--prompt-set", "workshop", "--json")
    timings["world_index_label_s"] = round(time.perf_counter() - t, 1)
    with open(world / "truth.csv", newline="") as fh:
        truth = list(csv.DictReader(fh))
    rng = np.random.default_rng(args.seed + 1)
    rows = []
    for group in GROUPS:
        values = sorted({r[group] for r in truth if r[group]})
        for value in values:
            members = [i for i, r in enumerate(truth) if r[group] == value]
            for i in rng.choice(members, min(args.per_option, len(members)), replace=False):
                rows.append({"path": str(world / truth[i]["file"]), group: value})
    sample = work / "reviews.csv"
    with open(sample, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", *GROUPS])
        writer.writeheader()
        writer.writerows(rows)
    manage(home, "import-labels", str(sample), "--json")
    manage(home, "learn", "--json")
    manage(home, "label", "--prompt-set", "workshop", "--json")
    score(args, home, truth, accept_all(args, home), timings, work)


def accept_all(args: argparse.Namespace, home: Path) -> dict:
    """``accept --min-precision P`` per group, through the CLI: ``{group: its report}``."""
    results = {}
    for group in GROUPS:
        t = time.perf_counter()
        done = manage(home, "accept", "--group", group, "--min-precision", str(args.min_precision), "--json",
                      expect=(0, 2))
        seconds = round(time.perf_counter() - t, 2)
        out = json.loads(done.stdout) if done.stdout.strip() else {}
        entry = {"exit": done.returncode, "seconds": seconds,
                 **{k: out.get(k) for k in ("threshold", "estimated_precision", "lower_bound", "accepted", "coverage",
                                            "random_reviews", "random_review_errors", "best_lower_bound",
                                            "more_random_reviews")}}
        if done.returncode == 2:
            entry["message"] = done.stderr.strip()
        results[group] = entry
    return results


def score(args: argparse.Namespace, home: Path, truth: list[dict], results: dict, timings: dict, work: Path) -> None:
    """Only here is truth.csv read: the auto labels' true precision, coverage and the oracle's."""
    by_file = {r["file"]: r for r in truth}
    con = sqlite3.connect(home / "catalog.db")
    stored = con.execute('SELECT l."group", l.value, l.predicted, l.status, l.confidence, f.path FROM labels l '
                         "JOIN image_files f ON f.image_id = l.image_id").fetchall()
    con.close()
    for group in GROUPS:
        unreviewed = [r for r in stored if r[0] == group and r[3] in ("auto", "proposed")]
        truths = [by_file[Path(r[5]).name][group] for r in unreviewed]
        auto = np.array([r[3] == "auto" for r in unreviewed], bool)
        correct = np.array([t == r[1] for t, r in zip(truths, unreviewed)], bool)
        conf = np.array([r[4] or 0.0 for r in unreviewed])
        results[group].update(true_precision=round(float(correct[auto].mean()), 4) if auto.any() else None,
                              true_coverage=round(float(auto.mean()), 4),
                              oracle_coverage=round(oracle_coverage(conf, correct, args.min_precision), 4),
                              accuracy=round(float(correct.mean()), 4))
    report = {"seed": args.seed, "images": args.images, "per_option": args.per_option,
              "min_precision": args.min_precision, "groups": results, "timings": timings, "work": str(work)}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"seed {args.seed}, {args.images} images, {args.per_option} random reviews per option, "
          f"accept --min-precision {args.min_precision}")
    print(f"{'group':<10}{'exit':>5}{'stated':>9}{'true prec':>10}{'coverage':>10}{'oracle':>8}{'reviews':>9}")
    for group, r in results.items():
        print(f"{group:<10}{r['exit']:>5}{(r['lower_bound'] or 0):>9.4f}{(r['true_precision'] or 0):>10.4f}"
              f"{r['true_coverage']:>10.3f}{r['oracle_coverage']:>8.3f}{(r['random_reviews'] or 0):>9}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
