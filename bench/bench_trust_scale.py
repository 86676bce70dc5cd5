#!/usr/bin/env python
"""Time ``accept`` and ``audit`` at scale on bench_scale's synthetic home (issue 24: at most 30 s each at 1M).

``bench_scale.build(home, N)`` makes N embedded images (real labeler-tiny vectors plus noise); then
through the real CLI: ``label --group concept``, a random sample of ``--reviews`` concept labels
imported by image id (their proposed values, ``--wrong`` of them changed to another option),
``learn``, ``label`` again, and the timed commands: ``accept --dry-run``, ``accept``, ``accept
--undo``, ``audit``. The baseline in the same run is the ``label`` rerun with the fit (one pass over
every vector and label), so the ratios say what accepting or auditing costs next to labeling.

``--before CHECKOUT`` also times ``accept --dry-run``, ``accept`` and ``--undo`` with another
checkout's code (e.g. ``main`` before a change) on the same home in the same run, first, so the
two are compared under the same load. ``--reuse``: a home that already has the images and the
group's labels (e.g. a copy of the shared 1M home, every workshop group labeled) is used as it
is, instead of ``build`` (which wipes the labels of a reused home); ``--prepared``: it also has the
reviews, the fit and its proposals from an earlier run, so only the timed commands run.

    PYTHONPATH=. .venv/bin/python bench/bench_trust_scale.py HOME --images 1000000 [--json]
    PYTHONPATH=. .venv/bin/python bench/bench_trust_scale.py COPY_OF_1M --reuse --before /work/main
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import TINY_NAME, build  # noqa: E402
from bench_trust import manage as _manage  # noqa: E402

GROUP = "concept"


def timed(home: Path, *args: str, expect=(0,), root: Path | None = None) -> tuple[float, dict]:
    """Seconds and JSON of one CLI command; ``root``: another checkout's ``manage.py`` runs it."""
    started = time.perf_counter()
    if root is None:
        done = _manage(home, *args, "--json", expect=expect)
    else:
        cmd = [sys.executable, str(root / "manage.py"), "--home", str(home), "--model", "labeler-tiny", *args, "--json"]
        done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root)})
        if done.returncode not in expect:
            raise SystemExit(f"{root}: {' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return round(time.perf_counter() - started, 2), (json.loads(done.stdout) if done.stdout.strip() else {})


def log(out: dict) -> None:
    """What is measured so far, on stderr: a long run that is stopped keeps its numbers."""
    print(json.dumps(out), file=sys.stderr, flush=True)


def accept_cycle(home: Path, root: Path | None = None) -> dict:
    """``accept --dry-run``, ``accept`` and ``accept --undo`` of the group, timed."""
    out: dict = {}
    out["accept_dry_run_s"], _ = timed(home, "accept", "--group", GROUP, "--min-precision", "0.9", "--dry-run",
                                       expect=(0, 2), root=root)
    out["accept_s"], done = timed(home, "accept", "--group", GROUP, "--min-precision", "0.9", expect=(0, 2), root=root)
    out["accepted"] = done.get("accepted")
    if done.get("run"):
        out["undo_s"], _ = timed(home, "accept", "--undo", str(done["run"]), root=root)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("home", type=Path)
    ap.add_argument("--images", type=int, default=1_000_000)
    ap.add_argument("--reviews", type=int, default=400)
    ap.add_argument("--wrong", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--reuse", action="store_true", help="Use HOME as it is (images and labels), no build.")
    ap.add_argument("--prepared", action="store_true",
                    help="HOME already has the group's reviews, fit and proposals (an earlier run): time only.")
    ap.add_argument("--before", type=Path, default=None, metavar="CHECKOUT",
                    help="Also time accept and undo with this checkout's code, in the same run.")
    args = ap.parse_args()
    assert TINY_NAME  # the home's model is bench_scale's labeler-tiny
    if args.reuse:
        con = sqlite3.connect(args.home / "catalog.db")
        out: dict = {"images": con.execute("SELECT count(*) FROM embeddings").fetchone()[0], "build_s": 0.0,
                     "labels": con.execute("SELECT count(*) FROM labels").fetchone()[0]}
        con.close()
    else:
        built = build(args.home, args.images)
        out = {"images": built["images"], "build_s": built["seconds"]}
    # With --before, that checkout prepares the home: the code under test may migrate the catalog
    # past what the older code knows, so it runs only after the older code's timings.
    prep = args.before.resolve() if args.before is not None else None
    if not args.prepared:
        out["label_s"], _ = timed(args.home, "label", "--prompt-set", "workshop", "--group", GROUP, root=prep)
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
        timed(args.home, "import-labels", str(sample), root=prep)
        out["learn_s"], _ = timed(args.home, "learn", "--group", GROUP, root=prep)
        out["label_with_fit_s"], _ = timed(args.home, "label", "--prompt-set", "workshop", "--group", GROUP, root=prep)
        log(out)
    if prep is not None:
        out["before"] = {"checkout": str(args.before), **accept_cycle(args.home, prep)}
        log(out)
    out.update(accept_cycle(args.home))
    log(out)
    out["audit_s"], report = timed(args.home, "audit", "--group", GROUP)
    out["audited"] = report.get("audited")
    base = out.get("label_with_fit_s")
    if base:
        out["ratios_to_label"] = {k: round(out[k] / base, 3) for k in ("accept_dry_run_s", "accept_s", "audit_s")}
    if "before" in out:
        out["speedup_over_before"] = {k: round(out["before"][k] / out[k], 2)
                                      for k in ("accept_dry_run_s", "accept_s", "undo_s") if k in out["before"] and out.get(k)}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{out['images']} images: accept {out['accept_s']} s ({out['accepted']} accepted), dry run "
              f"{out['accept_dry_run_s']} s, audit {out['audit_s']} s; label with the fit {base} s "
              f"(ratios {out.get('ratios_to_label')})")
        if "before" in out:
            b = out["before"]
            print(f"before ({b['checkout']}): accept {b['accept_s']} s, dry run {b['accept_dry_run_s']} s, undo "
                  f"{b.get('undo_s')} s; speed-up {out['speedup_over_before']}")


if __name__ == "__main__":
    main()
