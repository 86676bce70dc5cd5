#!/usr/bin/env python
"""Bench how truthfully the learn job reports progress: distinct values and the longest stall.

Builds a collection (a generated world, indexed with labeler-tiny and labeled with the workshop
prompt set), reviews ``--per-option`` labels per true value in every group from the world's
truth.csv, then runs the dashboard's learn-and-relabel job (``jobs.learn_and_relabel``, the real
thing) with every progress write timed. The same run gives the baseline: the old step scheme (one
step per group learned, one per image relabeled) is what those writes would have shown, since it
only moved when a group or a chunk finished. Prints, for both: distinct values, and the longest
time the value stood still as a share of the run (issue 28: at most 40%; 10 or more values).

    .venv/bin/python bench/bench_job_progress.py [--images 600] [--per-option 8] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labeler.review import decisions as review, jobs  # noqa: E402
from labeler.store.catalog import ImageFile, Job, Label  # noqa: E402
from labeler.collection import Collection  # noqa: E402
from labeler.config import Config  # noqa: E402
from labeler.encoding.encoder import TINY_NAME  # noqa: E402
from sqlalchemy import select  # noqa: E402


class TimedProgress(jobs.Progress):
    """The job's real progress row, with each write's time, value and message kept."""

    def __init__(self, collection, job_id):
        super().__init__(collection, job_id)
        self.writes: list[tuple[float, int, int | None, str | None]] = []

    def set(self, done=None, total=None, message=None) -> None:
        super().set(done, total, message)
        self.writes.append((time.perf_counter(), self.done, self.total, message))


def build(home: Path, images: int, per_option: int) -> Collection:
    from labeler.labeling import bulk as labeling
    from labeler.ingest import run
    from labeler.core.prompts import load_prompt_set
    from labeler.demo_world import generate_world

    truth_csv = Path(generate_world(home.parent / "world", images, seed=23))
    collection = Collection(Config(home=home, model=TINY_NAME, secret_key="bench"))
    run.index_paths(collection, [truth_csv.parent])
    labeling.label_collection(collection, load_prompt_set("workshop"))
    truth = {row["file"]: row for row in csv.DictReader(truth_csv.open())}
    with collection.session() as s:
        name_of = {image_id: Path(path).name for image_id, path in s.execute(select(ImageFile.image_id, ImageFile.path))}
        taken: dict[tuple[str, str], int] = {}
        for label in s.scalars(select(Label).order_by(Label.id)).all():
            value = (truth.get(name_of.get(label.image_id)) or {}).get(label.group)
            if not value or taken.get((label.group, value), 0) >= per_option:
                continue
            taken[(label.group, value)] = taken.get((label.group, value), 0) + 1
            action = "accept" if label.value == value else "correct"
            review.decide(s, label.id, action, None, label.version, None if action == "accept" else value)
    return collection


def stall_share(points: list[tuple[float, int]], start: float, end: float) -> tuple[int, float]:
    """(distinct values, longest time between value changes as a share of the run)."""
    changes = [start]
    last = None
    for at, value in points:
        if value != last:
            changes.append(at)
            last = value
    changes.append(end)
    longest = max(b - a for a, b in zip(changes, changes[1:]))
    return len({value for _, value in points}), longest / max(end - start, 1e-9)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--per-option", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        collection = build(Path(tmp) / "home", args.images, args.per_option)
        with collection.session() as s:
            job = Job(kind=jobs.LEARN_AND_RELABEL, status="running", done=0)
            s.add(job)
            s.flush()
            job_id = job.id
            groups = len(review.groups(s))
        progress = TimedProgress(collection, job_id)
        start = time.perf_counter()
        _, summary = jobs.learn_and_relabel(collection, progress, {})
        end = time.perf_counter()
    now = [(at, done) for at, done, _, _ in progress.writes]
    # The old scheme: a step per group learned and one per image relabeled, so it moved only when
    # a group finished ("N of G groups") or a chunk was relabeled ("relabeling ...").
    old, learned, relabeled = [], 0, 0
    for at, _, _, message in progress.writes:
        if message and message.startswith("learning from reviews: ") and " groups" in message and "fold" not in message:
            learned = int(message.split(": ", 1)[1].split(" of ")[0])
        elif message and message.startswith("relabeling") and " of " in message:
            relabeled = int(message.rsplit(": ", 1)[1].split(" of ")[0])
        old.append((at, learned + relabeled))
    values_now, stall_now = stall_share(now, start, end)
    values_old, stall_old = stall_share(old, start, end)
    report = {"images": args.images, "groups": groups, "seconds": round(end - start, 2), "summary": summary,
              "now": {"distinct_values": values_now, "longest_stall_share": round(stall_now, 3)},
              "old_scheme": {"distinct_values": values_old, "longest_stall_share": round(stall_old, 3)},
              "stall_ratio_old_over_now": round(stall_old / max(stall_now, 1e-9), 2)}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"learn-and-relabel on {args.images} images, {groups} groups: {report['seconds']} s")
        print(f"  per fold and chunk (now): {values_now} distinct values, longest stall {100 * stall_now:.0f}% of the run")
        print(f"  per group and image (old): {values_old} distinct values, longest stall {100 * stall_old:.0f}% of the run")
        print(f"  longest stall, old / now: {report['stall_ratio_old_over_now']}x")
    return 0 if values_now >= 10 and stall_now <= 0.4 else 1


if __name__ == "__main__":
    sys.exit(main())
