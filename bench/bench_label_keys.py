#!/usr/bin/env python
"""A first ``label`` on PostgreSQL with the labels' foreign keys set aside while it writes, against
the same run with them kept, phase by phase, in the same run.

A run that rewrites most labels drops the queue indexes and builds them again at the end
(``labeler.store.queue_indexes``); on PostgreSQL it now drops the labels' four foreign keys with
them and adds them back after (one scan each), instead of a trigger per new row and key. Builds two
fresh bench homes of ``--images`` synthetic images (``bench_scale.build``: labeler-tiny vectors,
dim 128), each on its own database of one throwaway PostgreSQL server (Debian's, with the README's
settings), in the order given by ``--order``; labels the "kept" one with ``set_aside(keys=False)``
(the code before) and the "aside" one as ``label`` runs now, and prints both runs' phases and the
ratio of the whole runs.

    PYTHONPATH=. .venv/bin/python bench/bench_label_keys.py WORKDIR [--images 200000] [--order kept,aside] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_rank_ahead import first_label, postgres  # noqa: E402
from labeler.store import queue_indexes  # noqa: E402


def run(home: Path, images: int, url: str, aside: bool) -> dict:
    original = queue_indexes.set_aside
    queue_indexes.set_aside = lambda session, keys=True: original(session, keys=keys and aside)
    try:
        return first_label(home, images, url, ahead=True)
    finally:
        queue_indexes.set_aside = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path, help="where the two homes are built (made fresh)")
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--order", default="kept,aside", help="which run goes first")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    order = args.order.split(",")
    if sorted(order) != ["aside", "kept"]:
        raise SystemExit("error: --order names kept and aside, once each")
    homes = {name: args.workdir / f"keys-{name}" for name in order}
    for home in homes.values():
        shutil.rmtree(home, ignore_errors=True)
    with postgres(order) as urls:
        results = {name: run(homes[name], args.images, urls[name], aside=name == "aside") for name in order}
    results["ratio"] = round(results["kept"]["seconds"] / results["aside"]["seconds"], 2)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"first label of {args.images:,} images on PostgreSQL, foreign keys kept / set aside")
    for phase in sorted({p for name in order for p in results[name]["phases"]}):
        print(f"{phase:<24}" + "".join(f"{results[n]['phases'].get(phase, 0.0):>10.1f} s" for n in ("kept", "aside")))
    print(f"{'whole run':<24}" + "".join(f"{results[n]['seconds']:>10.1f} s" for n in ("kept", "aside")))
    print(f"{'catalog growth':<24}" + "".join(f"{results[n]['growth_bytes'] / 1e9:>9.2f} GB" for n in ("kept", "aside")))
    print(f"ratio (kept / aside): {results['ratio']:.2f}x")


if __name__ == "__main__":
    main()
