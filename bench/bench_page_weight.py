#!/usr/bin/env python
"""Bench page weight: each page's HTML (and the static files) as sent, plain against gzipped.

Builds a collection (a generated world, indexed with labeler-tiny and labeled with the workshop
prompt set), logs an admin in through the real Flask app and fetches every page twice: without
and with ``Accept-Encoding: gzip``. Prints bytes and the ratio per page; exits 1 when a queue
page is over issue 14's 15 KB on the wire.

    .venv/bin/python bench/bench_page_weight.py [--images 300] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labeler.store import users  # noqa: E402
from labeler.collection import Collection  # noqa: E402
from labeler.config import Config  # noqa: E402
from labeler.encoding.encoder import TINY_NAME  # noqa: E402

PASSWORD = "bench admin password"
QUEUE_MAX_WIRE_BYTES = 15_000
PAGES = ["/auth/login", "/", "/review?group=concept&status=&sort=id", "/images/1", "/search?q=hammer",
         "/lab", "/no/such/page", "/static/style.css", "/static/labeler.js", "/static/review.js"]


def build(home: Path, images: int) -> Config:
    from labeler.labeling import bulk as labeling
    from labeler.ingest import run
    from labeler.core.prompts import load_prompt_set
    from labeler.demo_world import generate_world

    truth = generate_world(home.parent / "world", images, seed=11)
    config = Config(home=home, model=TINY_NAME, secret_key="bench")
    collection = Collection(config)
    run.index_paths(collection, [Path(truth).parent])
    labeling.label_collection(collection, load_prompt_set("workshop"))
    with collection.session() as s:
        users.create_user(s, "admin", PASSWORD, "admin")
    return config


def measure(config: Config) -> list[dict]:
    from labeler.web import create_app

    client = create_app(config, {"TESTING": True}).test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/auth/login").get_data(as_text=True))
    client.post("/auth/login", data={"username": "admin", "password": PASSWORD, "csrf_token": token.group(1)})
    rows = []
    for url in PAGES:
        plain = client.get(url)
        packed = client.get(url, headers={"Accept-Encoding": "gzip"})
        rows.append({"url": url, "status": plain.status_code, "plain_bytes": len(plain.get_data()),
                     "wire_bytes": len(packed.get_data()), "encoding": packed.headers.get("Content-Encoding", "")})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-weight-") as tmp:
        rows = measure(build(Path(tmp) / "home", args.images))
    queue = next(r for r in rows if r["url"].startswith("/review"))
    if args.json:
        print(json.dumps({"images": args.images, "pages": rows}, indent=2))
    else:
        print(f"{'page':42s} {'status':>6s} {'plain':>9s} {'on wire':>9s} {'ratio':>6s}")
        for r in rows:
            print(f"{r['url']:42s} {r['status']:6d} {r['plain_bytes']:9,d} {r['wire_bytes']:9,d} "
                  f"{r['plain_bytes'] / r['wire_bytes']:5.1f}x {r['encoding']}")
    sys.exit(0 if queue["wire_bytes"] <= QUEUE_MAX_WIRE_BYTES else 1)


if __name__ == "__main__":
    main()
