#!/usr/bin/env python
"""Finding wrong labels (issue 24): import 400 concept labels of which 40 are wrong; does audit find them?

Through the real CLI on a fresh demo world: index, label, import 400 random images' concept
values from truth.csv with 40 of them replaced by a random other option, then ``audit --group
concept --json``. Only here does truth.csv score it: how many of the 40 are among the 60 most
suspect, and what share of the labels at or above audit's own cutoff are truly wrong.

    .venv/bin/python bench/bench_audit.py --seed 6161 [--images 3000] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_trust import manage  # noqa: E402

GROUP = "concept"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--reviews", type=int, default=400)
    ap.add_argument("--wrong", type=int, default=40)
    ap.add_argument("--work", type=Path, default=None, help="Keep the world and home here (a world there is reused).")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-audit-"))
    world, home = work / "world", work / "home"
    if not (world / "truth.csv").exists():
        manage(home, "demo-images", str(world), "--count", str(args.images), "--seed", str(args.seed), "--json")
    manage(home, "index", str(world), "--json")
    manage(home, "label", "--prompt-set", "workshop", "--group", GROUP, "--json")
    truth = list(csv.DictReader((world / "truth.csv").open()))
    options = sorted({r[GROUP] for r in truth if r[GROUP]})
    rng = np.random.default_rng(args.seed + 7)
    chosen = rng.choice(len(truth), args.reviews, replace=False)
    wrong = set(chosen[rng.choice(args.reviews, args.wrong, replace=False)].tolist())
    rows = []
    for i in chosen.tolist():
        value = truth[i][GROUP]
        if i in wrong:
            value = rng.choice([o for o in options if o != value])
        rows.append({"path": str(world / truth[i]["file"]), GROUP: value})
    with open(work / "imported.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", GROUP])
        writer.writeheader()
        writer.writerows(rows)
    manage(home, "import-labels", str(work / "imported.csv"), "--json")
    started = time.perf_counter()
    report = json.loads(manage(home, "audit", "--group", GROUP, "--limit", str(args.reviews), "--json").stdout)
    seconds = time.perf_counter() - started
    wrong_files = {truth[i]["file"] for i in wrong}
    flags = [Path(s["path"]).name in wrong_files for s in report["suspects"]]
    above = [f for s, f in zip(report["suspects"], flags) if s["score"] >= report["cutoff"]]
    result = {"seed": args.seed, "images": args.images, "reviews": args.reviews, "wrong": args.wrong,
              "found_in_top_60": int(sum(flags[:60])), "above_cutoff": len(above),
              "precision_above_cutoff": round(sum(above) / len(above), 4) if above else None,
              "recall_above_cutoff": round(sum(above) / args.wrong, 4), "cutoff": report["cutoff"],
              "audit_seconds": round(seconds, 2)}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"seed {args.seed}: {result['found_in_top_60']} of {args.wrong} wrong labels in the 60 most suspect; "
              f"{result['above_cutoff']} above the cutoff {result['cutoff']}, {result['precision_above_cutoff']} "
              f"of them truly wrong; audit took {result['audit_seconds']} s")


if __name__ == "__main__":
    main()
