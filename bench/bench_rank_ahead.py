#!/usr/bin/env python
"""A first ``label`` with its "most informative" rank found ahead of the writes, against the rank
written after them, phase by phase, in the same run.

Builds two fresh bench homes of ``--images`` synthetic images (``bench_scale.build``: labeler-tiny
vectors, dim 128), on SQLite or, with ``--postgres``, each on its own database of a throwaway
PostgreSQL server (Debian's, as the test suite starts it, with the README's settings). The first
is labeled with every workshop group and the rank pass after the writes (``RANK_AHEAD_DIALECTS``
emptied: the code before round 6), the second as ``label`` runs now. Each run is timed in process,
phase by phase (the scoring pass, proposing and writing, the rank pass, the queue indexes), and the
ratio of the whole runs is printed. A fresh home each: resetting a 1M home by deleting its labels
takes longer than building a new one. ``--only-now`` builds and labels only the second: ``label``
as it runs now, phase by phase, where two fresh homes would not fit the time or the disk (1M on
PostgreSQL).

    PYTHONPATH=. .venv/bin/python bench/bench_rank_ahead.py WORKDIR [--images 1000000] [--postgres] [--only-now] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import bench_scale  # noqa: E402
from labeler.core.prompts import load_prompt_set  # noqa: E402
from labeler.labeling import bulk, queue_order  # noqa: E402
from labeler.store import queue_indexes  # noqa: E402

PG_SETTINGS = "-c fsync=off -c shared_buffers=2GB -c work_mem=64MB -c maintenance_work_mem=1GB -c max_wal_size=8GB"


@contextmanager
def timed_phases() -> Iterator[dict]:
    """Seconds spent in each phase of ``label_collection`` while the block runs, by name."""
    times: dict[str, float] = {}
    phases = [(bulk, "rank_ahead", "scoring pass"), (bulk, "propose_and_write", "proposing and writing"),
              (queue_order, "store_informative", "rank pass"), (queue_indexes, "restore", "queue indexes")]
    originals = [(module, name, getattr(module, name)) for module, name, _ in phases]

    def wrap(fn, label):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                times[label] = times.get(label, 0.0) + time.perf_counter() - started
        return wrapper

    for (module, name, label), (_, _, fn) in zip(phases, originals):
        setattr(module, name, wrap(fn, label))
    try:
        yield times
    finally:
        for module, name, fn in originals:
            setattr(module, name, fn)


def first_label(home: Path, images: int, database_url: str | None, ahead: bool) -> dict:
    bench_scale.build(home, images, database_url=database_url)
    before = bench_scale.catalog_bytes(home, database_url)
    dialects = bulk.RANK_AHEAD_DIALECTS
    bulk.RANK_AHEAD_DIALECTS = dialects if ahead else ()
    try:
        with timed_phases() as phases:
            started = time.perf_counter()
            report = bulk.label_collection(bench_scale.collection_of(home, database_url=database_url),
                                           load_prompt_set(bench_scale.PROMPT_SET))
            seconds = time.perf_counter() - started
    finally:
        bulk.RANK_AHEAD_DIALECTS = dialects
    return {"seconds": round(seconds, 1), "phases": {k: round(v, 1) for k, v in phases.items()},
            "inserted": report.inserted, "ranks_moved": report.ranks_moved, "ranked_ahead": report.ranked_ahead,
            "growth_bytes": bench_scale.catalog_bytes(home, database_url) - before}


@contextmanager
def postgres(databases: list[str]) -> Iterator[dict[str, str]]:
    """A throwaway PostgreSQL server with ``databases``; yields their SQLAlchemy URLs by name."""
    from tests import postgres as pg

    reason = pg.available()
    if reason:
        raise SystemExit(f"error: {reason}")
    folder = Path(tempfile.mkdtemp(prefix="labeler-bench-pg-"))
    as_user = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]

    def run(*cmd):
        subprocess.run(as_user + [str(c) for c in cmd], check=True, capture_output=True)

    data = folder / "data"
    try:
        run(pg._pg_bin("initdb"), "-D", data, "-A", "trust", "-U", "labeler", "--no-sync")
        run(pg._pg_bin("pg_ctl"), "-D", data, "-w", "-l", folder / "log", "-o",
            f"-k {folder} -c listen_addresses='' {PG_SETTINGS}", "start")
        try:
            for name in databases:
                run(pg._pg_bin("createdb") or "createdb", "-h", folder, "-U", "labeler", name)
            yield {name: f"postgresql+psycopg://labeler@/{name}?host={folder}" for name in databases}
        finally:
            run(pg._pg_bin("pg_ctl"), "-D", data, "-m", "immediate", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path, help="where the two homes are built (made fresh)")
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--postgres", action="store_true", help="each home's catalog on a throwaway PostgreSQL")
    parser.add_argument("--only-now", action="store_true", help="label only as label runs now (no baseline)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs = {"ahead": True} if args.only_now else {"after": False, "ahead": True}
    homes = {name: args.workdir / f"rank-{name}" for name in runs}
    for home in homes.values():
        shutil.rmtree(home, ignore_errors=True)
    with (postgres(list(runs)) if args.postgres else _no_server(list(runs))) as urls:
        results = {name: first_label(homes[name], args.images, urls[name], ahead) for name, ahead in runs.items()}
    if "after" in results:
        results["ratio"] = round(results["after"]["seconds"] / results["ahead"]["seconds"], 2)
    results["catalog"] = "postgresql" if args.postgres else "sqlite"
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"first label of {args.images:,} images x {len(load_prompt_set(bench_scale.PROMPT_SET).groups)} groups "
          f"on {results['catalog']}")
    names = sorted({p for name in runs for p in results[name]["phases"]})
    print(f"{'':<24}" + "".join(f"{'rank ' + n:>12}" for n in runs))
    for phase in names:
        print(f"{phase:<24}" + "".join(f"{results[n]['phases'].get(phase, 0.0):>10.1f} s" for n in runs))
    print(f"{'whole run':<24}" + "".join(f"{results[n]['seconds']:>10.1f} s" for n in runs))
    print(f"{'catalog growth':<24}" + "".join(f"{results[n]['growth_bytes'] / 1e9:>9.2f} GB" for n in runs))
    print(f"{'ranks moved after':<24}" + "".join(f"{results[n]['ranks_moved']:>12,}" for n in runs))
    if "ratio" in results:
        print(f"ratio (after / ahead): {results['ratio']:.2f}x")


@contextmanager
def _no_server(names: list[str]) -> Iterator[dict[str, None]]:
    yield {name: None for name in names}


if __name__ == "__main__":
    main()
