#!/usr/bin/env python
"""Time ``accept`` and ``audit`` at scale on bench_scale's synthetic home (issue 24: at most 30 s each at 1M).

``bench_scale.build(home, N)`` makes N embedded images (real labeler-tiny vectors plus noise); then
through the real CLI: ``label --group concept``, a random sample of ``--reviews`` concept labels
imported by image id (their proposed values, ``--wrong`` of them changed to another option),
``learn``, ``label`` again, and the timed commands: ``accept --dry-run``, ``accept``, ``accept
--undo``, ``audit``. The baseline in the same run is the ``label`` rerun with the fit (one pass over
every vector and label), so the ratios say what accepting or auditing costs next to labeling.

    PYTHONPATH=. .venv/bin/python bench/bench_trust_scale.py HOME --images 1000000 [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import TINY_NAME, build  # noqa: E402
from bench_trust import manage as _manage  # noqa: E402

GROUP = "concept"


def timed(home: Path, *args: str, expect=(0,)) -> tuple[float, dict]:
    started = time.perf_counter()
    done = _manage(home, *args, "--json", expect=expect)
    return round(time.perf_counter() - started, 2), (json.loads(done.stdout) if done.stdout.strip() else {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("home", type=Path)
    ap.add_argument("--images", type=int, default=1_000_000)
    ap.add_argument("--reviews", type=int, default=400)
    ap.add_argument("--wrong", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    assert TINY_NAME  # the home's model is bench_scale's labeler-tiny
    built = build(args.home, args.images)
    out: dict = {"images": built["images"], "build_s": built["seconds"]}
    out["label_s"], _ = timed(args.home, "label", "--prompt-set", "workshop", "--group", GROUP)
    con = sqlite3.connect(args.home / "catalog.db")
    rows = con.execute('SELECT image_id, value FROM labels WHERE "group" = ? AND value IS NOT NULL',
                       (GROUP,)).fetchall()
    con.close()
    rng = np.random.default_rng(1)
    options = sorted({v for _, v in rows})
    picked = [rows[i] for i in rng.choice(len(rows), args.reviews, replace=False)]
    sample = args.home.parent / f"{args.home.name}-reviews.csv"
    with sample.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", GROUP])
        for k, (image_id, value) in enumerate(picked):
            writer.writerow([image_id, value if k >= args.wrong else next(o for o in options if o != value)])
    _manage(args.home, "import-labels", str(sample), "--json")
    out["learn_s"], _ = timed(args.home, "learn", "--group", GROUP)
    out["label_with_fit_s"], _ = timed(args.home, "label", "--prompt-set", "workshop", "--group", GROUP)
    out["accept_dry_run_s"], dry = timed(args.home, "accept", "--group", GROUP, "--min-precision", "0.9",
                                         "--dry-run", expect=(0, 2))
    out["accept_s"], done = timed(args.home, "accept", "--group", GROUP, "--min-precision", "0.9", expect=(0, 2))
    out["accepted"] = done.get("accepted")
    if done.get("run"):
        out["undo_s"], _ = timed(args.home, "accept", "--undo", str(done["run"]))
    out["audit_s"], report = timed(args.home, "audit", "--group", GROUP)
    out["audited"] = report.get("audited")
    base = out["label_with_fit_s"]
    out["ratios_to_label"] = {k: round(out[k] / base, 3) for k in ("accept_dry_run_s", "accept_s", "audit_s")}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{out['images']} images: accept {out['accept_s']} s ({out['accepted']} accepted), dry run "
              f"{out['accept_dry_run_s']} s, audit {out['audit_s']} s; label with the fit {base} s "
              f"(ratios {out['ratios_to_label']})")


if __name__ == "__main__":
    main()
