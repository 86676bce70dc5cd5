#!/usr/bin/env python
"""Does the QA report tell a careless reviewer from a careful one? (issue 23's QA target)

The issue's scenario on a real catalog: a QA share of 10% in every group, two reviewers taking
turns through the labels, one wrong on every fifth of their answers (a wrong option instead of
the truth), and a third person answering every QA task with the truth. The truth of a label is
what labeler-tiny proposed on the generated world (the same 60-image world as the web tests by
default). Reviewers go round the collection again (correcting back to the truth where the last
answer was wrong) until both have ``--qa`` QA'd decisions, when the report is read (and at twice
that with ``--twice``). For each QA sampler seed it prints each reviewer's QA'd decisions, kappa with its 95%
interval, the gap (careful minus careless; the target is at least 0.2) and whether the report
names the careless reviewer as lower (``lower_than``).

    PYTHONPATH=. .venv/bin/python bench/bench_qa.py WORKDIR --seeds 1 2 3 [--images 60] [--qa 100] [--twice] [--json]

``--simulate N`` replays the same scenario over seeds 0..N-1 without the catalog: the same labels,
truths and turns, one draw of a ``random.Random(seed)`` per decision as ``qa.sample`` makes, and
the report's kappa (``cohens_kappa`` within groups). It prints, per number of QA'd decisions each,
the share of seeds whose gap is under 0.2 and the share where the two kappas' intervals lie apart (what
``lower_than`` reports once both have enough QA'd decisions), in seconds instead of minutes a seed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import select, text  # noqa: E402

from labeler.collection import Collection  # noqa: E402
from labeler.config import Config  # noqa: E402
from labeler.review import decisions as review, qa  # noqa: E402
from labeler.store import db, users  # noqa: E402
from labeler.store.catalog import Label, QaTask  # noqa: E402

PASSWORD = "bench qa password 123"
CAREFUL, CARELESS, CHECKER = "careful", "careless", "checker"


def build(workdir: Path, images: int, model: str) -> Path:
    """Index and label a generated world once (reused while ``WORKDIR/home`` exists)."""
    from labeler.core.prompts import load_prompt_set
    from labeler.demo_world import generate_world
    from labeler.ingest import run
    from labeler.labeling import bulk as labeling

    home = workdir / f"home-{images}"
    if (home / "done").exists():
        return home
    shutil.rmtree(home, ignore_errors=True)
    folder = Path(generate_world(workdir / f"images-{images}", images, seed=7))
    folder = folder.parent if folder.is_file() else folder
    collection = Collection(Config(home=home, model=model))
    run.index_paths(collection, [folder])
    labeling.label_collection(collection, load_prompt_set("workshop"))
    with db.get_engine(collection.config).connect() as conn:  # the copies below take the main file only
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    (home / "done").write_text("built\n")
    return home


def scenario(home: Path, model: str, seed: int, share: float, need: int, twice: bool) -> dict:
    config = Config(home=home, model=model)
    with db.session_scope(config) as s:
        ids = {name: users.create_user(s, name, PASSWORD, role).id
               for name, role in ((CAREFUL, "reviewer"), (CARELESS, "reviewer"), (CHECKER, "admin"))}
        for group in review.groups(s):
            qa.set_share(s, group, share)
        truth = {label.id: label.value for label in s.scalars(select(Label).order_by(Label.id))}
        options = {group: review.options(s, group) for group in review.groups(s)}
    qa.sampler.seed(seed)
    order = sorted(truth)
    checked = {CAREFUL: 0, CARELESS: 0}
    readings, n, wrong = {}, 0, 0
    start = time.perf_counter()
    levels = (need, 2 * need) if twice else (need,)
    while len(readings) < len(levels):
        with db.session_scope(config) as s:
            for _ in range(100):
                label = s.get(Label, order[n % len(order)])
                name = CAREFUL if n % 2 == 0 else CARELESS
                others = [o for o in options[label.group] if o != truth[label.id]]
                if name == CARELESS and (n // 2) % 5 == 0 and others:
                    wrong += 1
                    review.decide(s, label.id, "correct", ids[name], label.version, others[n % len(others)])
                elif label.value == truth[label.id]:
                    review.decide(s, label.id, "accept", ids[name], label.version)
                else:
                    review.decide(s, label.id, "correct", ids[name], label.version, truth[label.id])
                task = s.scalar(select(QaTask).where(QaTask.label_id == label.id, QaTask.status == "open"))
                if task is not None:
                    qa.answer(s, task.id, ids[CHECKER], truth[label.id])
                    checked[name] += 1
                n += 1
                for level in levels:
                    if level not in readings and min(checked.values()) >= level:
                        rows = {r["reviewer"]: r for r in qa.report(s)}
                        careful, careless = rows[CAREFUL], rows[CARELESS]
                        readings[level] = {
                            "decisions": n, "careless_wrong": wrong,
                            "qa_checked": [careful["qa_checked"], careless["qa_checked"]],
                            "kappa": [careful["kappa"], careless["kappa"]],
                            "interval": [[careful["kappa_low"], careful["kappa_high"]],
                                         [careless["kappa_low"], careless["kappa_high"]]],
                            "gap": round(careful["kappa"] - careless["kappa"], 3),
                            "named_lower": careless["lower_than"] == [CAREFUL]}
    return {"seed": seed, "seconds": round(time.perf_counter() - start, 1), "readings": readings}


def simulate(home: Path, model: str, seeds: int, share: float, levels: tuple[int, ...]) -> list[dict]:
    """The scenario's gaps without the catalog, per level of QA'd decisions each: see the module doc."""
    import random

    from labeler.core.agreement import cohens_kappa, kappa_interval

    with db.session_scope(Config(home=home, model=model)) as s:
        labels = [(label.group, label.value) for label in s.scalars(select(Label).order_by(Label.id))]
        options = {group: review.options(s, group) for group in review.groups(s)}
    out = []
    for need in levels:
        gaps, named = [], 0
        for seed in range(seeds):
            draw = random.Random(seed).random
            pairs: tuple[list, list] = ([], [])
            groups: tuple[list, list] = ([], [])
            n = 0
            while min(len(pairs[0]), len(pairs[1])) < need:
                group, truth = labels[n % len(labels)]
                others = [o for o in options[group] if o != truth]
                who = n % 2
                value = others[n % len(others)] if who == 1 and (n // 2) % 5 == 0 and others else truth
                if draw() < share:
                    pairs[who].append((value, truth))
                    groups[who].append(group)
                n += 1
            gaps.append(cohens_kappa(pairs[0], groups[0]) - cohens_kappa(pairs[1], groups[1]))
            careful, careless = kappa_interval(pairs[0], groups[0]), kappa_interval(pairs[1], groups[1])
            named += bool(careful and careless and careless[1] < careful[0])  # the report's lower_than
        gaps.sort()
        out.append({"qa_checked": need, "seeds": seeds, "under_0.2": sum(g < 0.2 for g in gaps) / seeds,
                    "p5": round(gaps[seeds // 20], 3), "median": round(gaps[seeds // 2], 3),
                    "named_lower": named / seeds})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--seeds", type=int, nargs="+", default=[])
    ap.add_argument("--simulate", type=int, default=0, metavar="N", help="replay seeds 0..N-1 without the catalog")
    ap.add_argument("--images", type=int, default=60)
    ap.add_argument("--share", type=float, default=0.1)
    ap.add_argument("--qa", type=int, default=qa.MIN_QA_CHECKED, help="QA'd decisions per reviewer to read at")
    ap.add_argument("--twice", action="store_true", help="read the report at twice --qa too")
    ap.add_argument("--model", default="labeler-tiny")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    built = build(args.workdir, args.images, args.model)
    if args.simulate:
        for row in simulate(built, args.model, args.simulate, args.share, (25, 50, 100, 200, 300)):
            print(json.dumps(row) if args.json else
                  f"{row['qa_checked']:4} QA'd each: gap under 0.2 for {100 * row['under_0.2']:.1f}% of "
                  f"{row['seeds']} seeds; 5th percentile {row['p5']}, median {row['median']}; intervals apart "
                  f"(lower_than) for {100 * row['named_lower']:.1f}%", flush=True)
    results = []
    for seed in args.seeds:
        home = args.workdir / f"run-{seed}"
        shutil.rmtree(home, ignore_errors=True)
        shutil.copytree(built, home, ignore=shutil.ignore_patterns("*-wal", "*-shm"))
        results.append(scenario(home, args.model, seed, args.share, args.qa, args.twice))
        shutil.rmtree(home, ignore_errors=True)
        if not args.json:
            for level, r in sorted(results[-1]["readings"].items()):
                print(f"seed {seed} at {level} QA'd each: decisions {r['decisions']}, QA'd {r['qa_checked']}, "
                      f"kappa careful {r['kappa'][0]} {r['interval'][0]} careless {r['kappa'][1]} "
                      f"{r['interval'][1]}, gap {r['gap']}, named lower: {r['named_lower']}", flush=True)
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
