#!/usr/bin/env python
"""Bench the review queue at scale: server time of one queue page, per sort, p50 and p95.

Builds (or reuses) ``bench_scale``'s synthetic home of N images, labels it in every workshop group
through the real CLI, then times ``decisions.queue_page`` in process, as ``/review`` calls it for a
reviewer (their skips, other reviewers' leases and assignments excluded) on the first page and on a
page deep in the queue (keyset ``after``), for every sort. The baseline, measured in the same run,
is the same page without the team's exclusions (no reviewer): the ratio is what leases cost.

    PYTHONPATH=. .venv/bin/python bench/bench_queue.py HOME --images 1000000 [--group concept] [--repeat 15]
        [--sort uncertainty ...] [--reuse] [--web] [--database-url postgresql+psycopg://...]

``--database-url`` puts the catalog on that database (PostgreSQL) instead of HOME/catalog.db: the
build, the label run and every timing then go through it.

``--web`` also times the dashboard (``GET /``) and the whole ``GET /review`` request of that page (the reviewer's queue as the
browser asks for it: the page, its claim on the cards, the group list, the value filter's options
and the progress line), through the real app in process. It times the progress line alone too
(``decisions.progress``, sent with every decision as well): its first call after labels were added
(which counts the group once), later calls, and, as the baseline in the same run, counting the
group's labels by status as the line did before (``label_totals``).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from bench.bench_scale import build, collection_of, run_label  # noqa: E402
from labeler.collection import in_session  # noqa: E402
from labeler.review import decisions as review  # noqa: E402
from labeler.store import users  # noqa: E402
from labeler.store import label_totals  # noqa: E402
from labeler.store.catalog import Label, User  # noqa: E402

PASSWORD = "bench password 123"
PAGE = 96  # what a proposed queue reads: the page and the next batch it claims


def _times(run, repeat: int) -> tuple[float, float]:
    spent = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        spent.append((time.perf_counter() - start) * 1000)
    spent.sort()
    return statistics.median(spent), spent[min(len(spent) - 1, int(round(0.95 * (len(spent) - 1))))]


def _web_client(collection):
    """The real app, logged in as the bench reviewer."""
    from labeler.web import create_app

    app = create_app(replace(collection.config, secret_key="bench-queue-secret"), {"TESTING": True})
    client = app.test_client()
    page = client.get("/auth/login").get_data(as_text=True)
    token = re.search(r'<meta name="csrf-token" content="([^"]+)">', page).group(1)
    answer = client.post("/auth/login", data={"username": "bench", "password": PASSWORD, "csrf_token": token})
    if answer.status_code != 302:
        raise SystemExit(f"bench login failed: {answer.status_code}")
    return client


def _get(client, url: str) -> None:
    answer = client.get(url)
    if answer.status_code != 200:
        raise SystemExit(f"{url}: {answer.status_code}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("home", type=Path)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--group", default="concept")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--sort", action="append", choices=review.SORTS, help="only these sorts (default: all)")
    parser.add_argument("--reuse", action="store_true", help="a home already built and labeled: time it as it is")
    parser.add_argument("--web", action="store_true", help="also time the whole GET /review request per sort")
    parser.add_argument("--database-url", default=None, metavar="URL",
                        help="the catalog on this database (postgresql+psycopg://...) instead of HOME/catalog.db")
    args = parser.parse_args()
    collection = collection_of(args.home, database_url=args.database_url)
    have = in_session(collection.vectors.count) if args.reuse else 0  # in a unit of work, as the store asks
    if args.reuse and have >= args.images:
        made = {"images": have, "seconds": 0}
    else:
        made = build(args.home, args.images, database_url=args.database_url)  # a reused home starts unlabeled
        started = time.perf_counter()
        run_label(args.home, ROOT, [], args.database_url)
        print(f"built {made['images']:,} images ({made['seconds']} s); labeled them in every group in "
              f"{time.perf_counter() - started:.1f} s")
        collection = collection_of(args.home, database_url=args.database_url)
    with collection.session() as s:
        user_id = s.scalar(select(User.id).where(User.name == "bench"))
        if user_id is None:
            user_id = users.create_user(s, "bench", PASSWORD, "reviewer").id
        else:  # bench_map --prepare may have made the account with its own password
            users.set_password(s, "bench", PASSWORD)
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
              f"{base[0]:8.1f} / {base[1]:7.1f} {mine[0] / base[0]:6.2f}", flush=True)
    if args.web:
        with collection.session() as s:
            label_totals.bump(s)  # as after a label run: the first progress line counts the group
        with collection.session() as s:
            started = time.perf_counter()
            review.progress(s, args.group)
            once = (time.perf_counter() - started) * 1000
            line = _times(partial(review.progress, s, args.group), args.repeat)
            counted = _times(lambda: s.execute(select(Label.status, func.count()).where(Label.group == args.group)
                                               .group_by(Label.status)).all(), args.repeat)
        print(f"progress line, ms: first after labels were added {once:.1f}; then p50 / p95 {line[0]:.1f} / "
              f"{line[1]:.1f}; counting the group (before) {counted[0]:.1f} / {counted[1]:.1f}", flush=True)
        client = _web_client(collection)
        print(f"GET /review, ms p50 / p95 over {args.repeat}")
        for sort in args.sort or review.SORTS:
            url = f"/review?group={args.group}&status=proposed&sort={sort}"
            whole = _times(partial(_get, client, url), args.repeat)
            print(f"{sort:16} {whole[0]:9.1f} / {whole[1]:9.1f}", flush=True)
        dashboard = _times(partial(_get, client, "/"), min(args.repeat, 5))  # where a login lands
        print(f"GET / (the dashboard), ms p50 / p95 over {min(args.repeat, 5)}: {dashboard[0]:.1f} / {dashboard[1]:.1f}")


if __name__ == "__main__":
    main()
