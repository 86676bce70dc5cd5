#!/usr/bin/env python
"""A real user's login and first queue page while slow clients and long searches hold the server
(issue 21's target: at most 1 s with 200 half-open connections and 8 long searches).

Builds a small collection (``--images``, a generated world indexed with labeler-tiny and labeled
with the workshop prompt set; ``--home`` keeps it), starts the real ``manage.py serve`` (waitress)
and times, ``--runs`` times each, the median of: GET the login form, POST it, GET
``/review?group=concept`` -- first on an idle server (the baseline, same run), then with
``--half-open`` connections that each sent half a request and ``--searches`` clients that search
``/api/search`` without pause, each with its own 1,000-character text (a new text every time, so
every search encodes). The searches all come from one account, as the issue's probe did, unless
``--search-users`` spreads them over that many. Prints both medians and the ratio loaded/idle, and
how the searches were answered (200, 429 per-user cap, 503 server busy).

    nice .venv/bin/python bench/bench_login_load.py [--runs 5] [--images 500] [--home DIR] [--json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench_web_search import PASSWORD, USER, build  # noqa: E402
from labeler.encoding.encoder import TINY_NAME  # noqa: E402
from sqlalchemy import select  # noqa: E402

from labeler.store import db, users  # noqa: E402
from labeler.store.catalog import User  # noqa: E402
from labeler.collection import Collection  # noqa: E402
from labeler.config import Config  # noqa: E402
from tests.cli import manage_argv, serving  # noqa: E402
from tests.web.test_web_connections import half_open  # noqa: E402

WORDS = "hammer saw wrench mug bottle ball book lamp red blue green wooden metal plastic on a bench".split()


def request(port: int, method: str, path: str, body: str | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheader("Set-Cookie") or "", response.read()
    finally:
        conn.close()


def login_and_queue(port: int) -> float:
    """Seconds for the login form, its POST and the queue page, as a browser does them."""
    started = time.perf_counter()
    status, cookie, page = request(port, "GET", "/auth/login")
    token = re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()
    form = urllib.parse.urlencode({"username": USER, "password": PASSWORD, "csrf_token": token})
    status, new_cookie, _ = request(port, "POST", "/auth/login", form, {
        "Cookie": cookie.split(";")[0], "Content-Type": "application/x-www-form-urlencoded"})
    if status != 302:
        raise SystemExit(f"login answered {status}")
    status, _, _ = request(port, "GET", "/review?group=concept", headers={"Cookie": new_cookie.split(";")[0]})
    if status != 200:
        raise SystemExit(f"the queue page answered {status}")
    return time.perf_counter() - started


def searcher(port: int, token: str, seed: int, stop: threading.Event, answers: Counter) -> None:
    n = 0
    while not stop.is_set():
        words = [WORDS[(seed * 7 + n * 13 + i * i) % len(WORDS)] for i in range(200)]
        text = f"{seed} {n} " + " ".join(words)
        query = urllib.parse.urlencode({"q": text[:1000], "k": 50})
        try:
            status, _, _ = request(port, "GET", f"/api/search?{query}", headers={"Authorization": f"Bearer {token}"})
        except OSError:
            status = "error"
        answers[status] += 1
        if status in (429, 503):
            time.sleep(0.2)  # as a client that honours Retry-After would, roughly
        n += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--half-open", type=int, default=200)
    ap.add_argument("--searches", type=int, default=8)
    ap.add_argument("--search-users", type=int, default=1)
    ap.add_argument("--home", type=Path, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="bench-login-")) / "home"
    if not (home / "catalog.db").exists():
        build(home, args.images, TINY_NAME)
    tokens = []
    with Collection(Config(home=home, model=TINY_NAME)).session() as s:
        for n in range(args.search_users):
            name = f"searcher{n}"
            if s.scalar(select(User).where(User.name == name)) is None:
                users.create_user(s, name, PASSWORD, "reviewer")
            s.flush()
            tokens.append(users.issue_token(s, name))
    db.dispose_engines()
    env = {**os.environ, "LABELER_SECRET_KEY": "bench-login-load"}
    with serving(manage_argv("--home", home, "--model", TINY_NAME, "serve"), env=env) as server:
        port = server.port
        login_and_queue(port)  # warm: templates, the catalog's pages
        idle = [login_and_queue(port) for _ in range(args.runs)]
        held = half_open(port, args.half_open)
        stop, answers = threading.Event(), Counter()
        threads = [threading.Thread(target=searcher, args=(port, tokens[n % len(tokens)], n, stop, answers))
                   for n in range(args.searches)]
        for t in threads:
            t.start()
        time.sleep(2.0)  # let the searches take the server
        try:
            loaded = [login_and_queue(port) for _ in range(args.runs)]
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=120)
            for s in held:
                s.close()
    out = {"idle_s": round(statistics.median(idle), 3), "loaded_s": round(statistics.median(loaded), 3),
           "loaded_max_s": round(max(loaded), 3), "runs": args.runs, "half_open": args.half_open,
           "searches": args.searches, "search_users": args.search_users,
           "search_answers": {str(k): v for k, v in sorted(answers.items(), key=str)},
           "load": [round(x, 1) for x in os.getloadavg()], "cpus": os.cpu_count()}
    out["ratio"] = round(out["loaded_s"] / out["idle_s"], 2)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"login + queue page, median of {args.runs} (load {out['load'][0]}, {out['cpus']} cpus):")
    print(f"  idle server: {out['idle_s']:.3f} s")
    print(f"  {args.half_open} half-open + {args.searches} searches ({args.search_users} user(s)): "
          f"{out['loaded_s']:.3f} s (worst {out['loaded_max_s']:.3f} s), ratio {out['ratio']}")
    print(f"  search answers meanwhile: {out['search_answers']}")


if __name__ == "__main__":
    main()
