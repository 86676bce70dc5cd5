#!/usr/bin/env python
"""Bench the review queue at scale: server time of one queue page, per sort, p50 and p95.

Builds (or reuses) ``bench_scale``'s synthetic home of N images, labels it in every workshop group
through the real CLI, then times ``decisions.queue_page`` in process, as ``/review`` calls it for a
reviewer (their skips, other reviewers' leases and assignments excluded) on the first page and on a
page deep in the queue (keyset ``after``), for every sort. The baseline, measured in the same run,
is the same page without the team's exclusions (no reviewer): the ratio is what leases cost.

    PYTHONPATH=. .venv/bin/python bench/bench_queue.py HOME --images 1000000 [--group concept] [--repeat 15]
        [--sort uncertainty ...] [--reuse]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402

from bench.bench_scale import build, collection_of, run_label  # noqa: E402
from labeler.collection import in_session  # noqa: E402
from labeler.review import decisions as review  # noqa: E402
from labeler.store import users  # noqa: E402
from labeler.store.catalog import User  # noqa: E402

PAGE = 96  # what a proposed queue reads: the page and the next batch it claims


def _times(run, repeat: int) -> tuple[float, float]:
    spent = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        spent.append((time.perf_counter() - start) * 1000)
    spent.sort()
    return statistics.median(spent), spent[min(len(spent) - 1, int(round(0.95 * (len(spent) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("home", type=Path)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--group", default="concept")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--sort", action="append", choices=review.SORTS, help="only these sorts (default: all)")
    parser.add_argument("--reuse", action="store_true", help="a home already built and labeled: time it as it is")
    args = parser.parse_args()
    collection = collection_of(args.home)
    have = in_session(collection.vectors.count) if args.reuse else 0  # in a unit of work, as the store asks
    if args.reuse and have >= args.images:
        made = {"images": have, "seconds": 0}
    else:
        made = build(args.home, args.images)  # a reused home starts unlabeled
        started = time.perf_counter()
        run_label(args.home, ROOT, [])
        print(f"built {made['images']:,} images ({made['seconds']} s); labeled them in every group in "
              f"{time.perf_counter() - started:.1f} s")
        collection = collection_of(args.home)
    with collection.session() as s:
        user_id = s.scalar(select(User.id).where(User.name == "bench"))
        if user_id is None:
            user_id = users.create_user(s, "bench", "bench password 123", "reviewer").id
    print(f"queue pages of {PAGE}, group {args.group}, {made['images']:,} images; "
          f"ms of server time, p50 / p95 over {args.repeat}")
    print(f"{'sort':16} {'first page':>22} {'deep page':>22} {'baseline first':>18} {'ratio':>6}")
    for sort in args.sort or review.SORTS:
        with collection.session() as s:
            first = review.queue_page(s, args.group, None, "proposed", sort, PAGE, user_id)
            deep_key = first.last
            for _ in range(5):  # five pages in
                page = review.queue_page(s, args.group, None, "proposed", sort, PAGE, user_id, after=deep_key)
                deep_key = page.last or deep_key
            page_of = partial(review.queue_page, s, args.group, None, "proposed", sort, PAGE)
            mine = _times(partial(page_of, user_id), args.repeat)
            deep = _times(partial(page_of, user_id, after=deep_key), args.repeat)
            base = _times(page_of, args.repeat)
        print(f"{sort:16} {mine[0]:9.1f} / {mine[1]:9.1f} {deep[0]:9.1f} / {deep[1]:9.1f} "
              f"{base[0]:8.1f} / {base[1]:7.1f} {mine[0] / base[0]:6.2f}")


if __name__ == "__main__":
    main()
