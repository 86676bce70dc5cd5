#!/usr/bin/env python
"""Bench web search under concurrency, and the CLI's start-up for a cached query text.

Builds a 2,000-image collection (a generated world, indexed with labeler-tiny and labeled with the
workshop prompt set; ``--home`` keeps it for the next run), starts ``manage.py serve --processes N`` (waitress)
on a free port for each N of ``--processes`` (default 1, then 2), logs in through the login form, warms one query text (the first search encodes
and caches it) and then drives ``/api/search`` with that cached text from 1 client and from
``--clients`` clients at once; every figure is also printed as a ratio to one client of the
first server (one process, serve's default), measured in the same run. Every client is its own process with one keep-alive connection, so
the client side never shares a GIL with itself; each reports its CPU time per request, which
the bench prints as the client's own overhead.

Then the CLI: ``manage.py search TEXT`` (cached text) wall time against ``python -c pass`` and
against importing ``labeler.cli`` alone, each the median of ``--cli-runs`` runs.

    .venv/bin/python bench/bench_web_search.py [--clients 8] [--seconds 10] [--processes 1,2] [--images 2000] [--home DIR] [--json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from labeler.store import db, users  # noqa: E402
from labeler.collection import Collection  # noqa: E402
from labeler.config import Config  # noqa: E402
from labeler.encoding.encoder import TINY_NAME  # noqa: E402
from tests.cli import ROOT, manage_argv, serving  # noqa: E402

USER, PASSWORD = "bench", "bench web search password"
QUERY = "metal hammer with wooden handle"
K = 20


def build(home: Path, images: int, model: str) -> None:
    """Index and label a generated world of ``images`` in ``home``, plus the bench's account."""
    from labeler.labeling import bulk as labeling
    from labeler.ingest import run
    from labeler.core.prompts import load_prompt_set
    from labeler.demo_world import generate_world

    truth = generate_world(home.parent / "world", images, seed=11, size=96)
    collection = Collection(Config(home=home, model=model))
    run.index_paths(collection, [Path(truth).parent])
    labeling.label_collection(collection, load_prompt_set("workshop"))
    with collection.session() as s:
        users.create_user(s, USER, PASSWORD, "reviewer")
    db.dispose_engines()  # the server is another process: leave it the catalog


def log_in(port: int) -> str:
    """Log in through the form, as a browser does; returns the session cookie header."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/auth/login")
    response = conn.getresponse()
    html = response.read().decode()
    cookie = response.getheader("Set-Cookie", "").split(";")[0]
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    body = urllib.parse.urlencode({"username": USER, "password": PASSWORD, "csrf_token": token})
    conn.request("POST", "/auth/login", body, {"Content-Type": "application/x-www-form-urlencoded",
                                               "Cookie": cookie})
    response = conn.getresponse()
    response.read()
    if response.status != 302:
        raise SystemExit(f"login failed: {response.status}")
    conn.close()
    return response.getheader("Set-Cookie").split(";")[0]


def client(port: int, cookie: str, path: str, seconds: float, ready, go, out) -> None:
    """One client process: one keep-alive connection, requests back to back for ``seconds`` after ``go``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.connect()
    headers = {"Cookie": cookie}
    latencies, bad = [], 0
    ready.put(True)
    go.wait()
    cpu = time.process_time()
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        began = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        latencies.append(time.perf_counter() - began)
        bad += response.status != 200 or b'"image_id"' not in body
    out.put((latencies, bad, time.process_time() - cpu))
    conn.close()


def drive(port: int, cookie: str, path: str, clients: int, seconds: float) -> dict:
    """``clients`` processes for ``seconds``: requests/s, p50/p99 latency, client CPU per request."""
    ctx = multiprocessing.get_context("spawn")
    ready, go, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=client, args=(port, cookie, path, seconds, ready, go, out)) for _ in range(clients)]
    for p in procs:
        p.start()
    for _ in procs:  # every process is up and connected before the clock starts
        ready.get()
    go.set()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    latencies = np.array([t for r in results for t in r[0]]) * 1000
    return {"clients": clients, "requests": int(len(latencies)),
            "requests_per_second": round(len(latencies) / seconds, 1),
            "p50_ms": round(float(np.percentile(latencies, 50)), 2),
            "p99_ms": round(float(np.percentile(latencies, 99)), 2),
            "bad_answers": sum(r[1] for r in results),
            "client_cpu_ms_per_request": round(1000 * sum(r[2] for r in results) / max(1, len(latencies)), 3)}


def median_wall(argv: list[str], runs: int, env: dict) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - began)
    return round(statistics.median(times), 3)


def cli_start(home: Path, model: str, runs: int) -> dict:
    """Wall times of a cached-text CLI search against a bare interpreter and the CLI's import."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    search = manage_argv("--home", home, "--model", model, "search", QUERY, "-k", K, "--json")
    return {"python_pass_s": median_wall([sys.executable, "-c", "pass"], runs, env),
            "import_cli_s": median_wall([sys.executable, "-c", "import labeler.cli"], runs, env),
            "help_s": median_wall(manage_argv("--help"), runs, env),
            "search_cached_s": median_wall(search, runs, env)}


def load(home: Path, model: str, clients: int, seconds: float, threads: int | None, processes: int) -> dict:
    """One ``serve --processes N``: 1 client, then ``clients`` clients, on a warmed server."""
    path = "/api/search?" + urllib.parse.urlencode({"q": QUERY, "k": K})
    # Searches run in slots, at most half the request threads: twice as many threads as clients
    # (unless --threads says) lets every client search at once, as before the slots.
    extra = ["--threads", threads or 2 * clients, "--processes", processes]
    # One user drives every request: the per-user search limits would cap what this measures.
    env = {**os.environ, "LABELER_SECRET_KEY": "bench-web-search", "LABELER_SEARCH_PER_MINUTE": "1000000",
           "LABELER_SEARCHES_PER_USER": "1000", "LABELER_SEARCHES_AT_ONCE": "1000"}
    with serving(manage_argv("--home", home, "--model", model, "serve", *extra),
                 env=env) as server:
        cookie = log_in(server.port)
        status, body = server.get(path, {"Cookie": cookie})  # encodes the text once and caches it
        if status != 200 or len(json.loads(body)["hits"]) != K:
            raise SystemExit(f"warm-up search failed: {status} {body[:300]!r}")
        drive(server.port, cookie, path, clients, 1.0)  # warms every process's pools and caches
        one = drive(server.port, cookie, path, 1, seconds)
        many = drive(server.port, cookie, path, clients, seconds)
    return {"processes": processes, "one": one, "many": many,
            "ratio": round(many["requests_per_second"] / one["requests_per_second"], 2)}


def run(home: Path, model: str, clients: int, seconds: float, threads: int | None, processes: list[int],
        cli_runs: int) -> dict:
    servers = [load(home, model, clients, seconds, threads, n) for n in processes]
    base = servers[0]["one"]["requests_per_second"]
    for row in servers:  # against one client of the first server (serve's default, one process)
        row["many_over_baseline"] = round(row["many"]["requests_per_second"] / base, 2)
    result = {"servers": servers, "cli": cli_start(home, model, cli_runs)}
    result["cli"]["search_over_python"] = round(result["cli"]["search_cached_s"] / result["cli"]["python_pass_s"], 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each load runs")
    parser.add_argument("--images", type=int, default=2000, help="images in the generated collection")
    parser.add_argument("--threads", type=int, default=None,
                        help="waitress threads [twice --clients, so that every client's search has a slot]")
    parser.add_argument("--processes", default="1,2",
                        help="serve --processes values to load in turn; the first is the baseline [1,2]")
    parser.add_argument("--cli-runs", type=int, default=5)
    parser.add_argument("--model", default=TINY_NAME)
    parser.add_argument("--home", type=Path, default=None,
                        help="keep the built collection here and reuse it next time [a temporary folder]")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-web-search-") as tmp:
        home = (args.home or Path(tmp) / "bench") / "home"
        started = time.perf_counter()
        if not (home / db.CATALOG_FILE).exists():
            build(home, args.images, args.model)
        build_seconds = round(time.perf_counter() - started, 1)
        processes = [int(n) for n in args.processes.split(",")]
        result = run(home, args.model, args.clients, args.seconds, args.threads, processes, args.cli_runs)
    result["build_seconds"] = build_seconds
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"/api/search, cached text, k={K}, {args.images:,} images (built in {build_seconds} s)")
    for server in result["servers"]:
        print(f"serve --processes {server['processes']}:")
        for row in (server["one"], server["many"]):
            print(f"  {row['clients']} client(s): {row['requests_per_second']:>7} requests/s  p50 {row['p50_ms']} ms  "
                  f"p99 {row['p99_ms']} ms  ({row['requests']:,} requests, {row['bad_answers']} bad; "
                  f"client CPU {row['client_cpu_ms_per_request']} ms/request)")
        print(f"  {args.clients} clients / 1 client: {server['ratio']}x; "
              f"/ 1 client of --processes {processes[0]}: {server['many_over_baseline']}x")
    cli = result["cli"]
    print(f"CLI (median of {args.cli_runs}): python -c pass {cli['python_pass_s']} s, import labeler.cli "
          f"{cli['import_cli_s']} s, --help {cli['help_s']} s, search (cached text) {cli['search_cached_s']} s "
          f"= {cli['search_over_python']}x python -c pass")


if __name__ == "__main__":
    main()
