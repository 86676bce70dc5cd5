#!/usr/bin/env python
"""Server time of the spot-check queue (issue 24: a spot-check page in at most 150 ms).

On a home where ``bench_trust_scale.py`` left a group with a fit and random reviews (or any home
whose group already has ``auto`` labels), accept the group at ``--min-precision`` if it has no
auto labels yet, then time, through the real app (Flask's test client: the server's whole work
for the request, no network), a reviewer's ``/review?status=auto&sort=spot-check`` page, its
next batch (``/api/review/queue``, keyset ``after``) and ``/api/labels``. The baseline in the same run is
the same page sorted by ``id``, the cheapest order the queue has.

    PYTHONPATH=. .venv/bin/python bench/bench_spot_check.py HOME [--group concept] [--repeat 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from labeler.collection import Collection  # noqa: E402
from labeler.config import Config  # noqa: E402
from labeler.review import trust  # noqa: E402
from labeler.store import users  # noqa: E402
from labeler.store.catalog import Label, User  # noqa: E402

NAME, PASSWORD = "spot-bench", "spot bench password 123"


def _times(get, repeat: int) -> tuple[float, float]:
    """p50 and p95 milliseconds of ``get()`` (which must answer 200)."""
    spent = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = get()
        spent.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.status_code
    spent.sort()
    return round(statistics.median(spent), 1), round(spent[min(len(spent) - 1, int(round(0.95 * (len(spent) - 1))))], 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("home", type=Path)
    ap.add_argument("--group", default="concept")
    ap.add_argument("--min-precision", type=float, default=0.9)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    config = Config(home=args.home, model="labeler-tiny", secret_key="bench-spot-check-secret")
    collection = Collection(config)
    with collection.session() as s:
        if s.scalar(select(User.id).where(User.name == NAME)) is None:
            users.create_user(s, NAME, PASSWORD, "reviewer")
        auto = s.scalar(select(func.count()).select_from(Label).where(Label.group == args.group, Label.status == "auto"))
    out: dict = {"group": args.group}
    if not auto:
        started = time.perf_counter()
        done = trust.accept(collection, args.group, args.min_precision)
        out["accept"] = {"run": done["run"], "accepted": done["accepted"], "s": round(time.perf_counter() - started, 1)}
        auto = done["accepted"]
    with collection.session() as s:
        out["labels"] = s.scalar(select(func.count()).select_from(Label))
    out["auto"] = auto

    from labeler.web import create_app

    client = create_app(config).test_client()
    token = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/auth/login").get_data(as_text=True)).group(1)
    assert client.post("/auth/login", data={"username": NAME, "password": PASSWORD, "csrf_token": token}).status_code == 302
    query = f"group={args.group}&status=auto"
    following = client.get(f"/api/review/queue?{query}&sort=spot-check").get_json()["next"]  # the next page's URL
    after = parse_qs(urlparse(following).query)["after"][0]
    pages = {
        "page": lambda: client.get(f"/review?{query}&sort=spot-check"),
        "next_batch": lambda: client.get("/api/review/queue", query_string={
            "group": args.group, "status": "auto", "sort": "spot-check", "after": after}),
        "api_labels": lambda: client.get(f"/api/labels?{query}&sort=spot-check&limit=48"),
        "baseline_id_page": lambda: client.get(f"/review?{query}&sort=id"),
    }
    out["ms_p50_p95"] = {name: _times(get, args.repeat) for name, get in pages.items()}
    out["ratio_page_to_id_page"] = round(out["ms_p50_p95"]["page"][0] / out["ms_p50_p95"]["baseline_id_page"][0], 2)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{out['labels']:,} labels, {auto:,} auto in {args.group}; ms of server time, p50 / p95 over {args.repeat}")
    for name, (p50, p95) in out["ms_p50_p95"].items():
        print(f"  {name:18} {p50:9.1f} / {p95:9.1f}")
    print(f"  spot-check page / id page: {out['ratio_page_to_id_page']}")


if __name__ == "__main__":
    main()
