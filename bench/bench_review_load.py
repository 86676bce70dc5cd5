#!/usr/bin/env python
"""Bench reviewing under load: many reviewers deciding at once on a really served collection.

Builds a collection (a generated world, indexed with labeler-tiny and labeled with the workshop
prompt set), makes one reviewer account and API token per reviewer, starts ``manage.py serve``
(waitress) on a free port and lets the reviewers work for a while, each on its own labels with its
own HTTP connection: a bulk accept of a batch (``accept-selected``), then single decisions through
``/api/labels/<id>/review`` (undo one, reject one, correct one, accept one), and on to the next
batch. It prints decisions/s, p50/p99 request latency and the count of 5xx answers, and checks that
the catalog's review events equal the decisions the server said it applied. Exits 1 on any 5xx or
a mismatch.

    .venv/bin/python bench/bench_review_load.py [--reviewers 16] [--seconds 20] [--images 500] [--json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sqlalchemy import func, select  # noqa: E402

from labeler.store import db, users  # noqa: E402
from labeler.store.catalog import ReviewEvent  # noqa: E402
from labeler.collection import Collection  # noqa: E402
from labeler.config import Config  # noqa: E402
from labeler.encoding.encoder import TINY_NAME  # noqa: E402
from tests.cli import ROOT, manage_argv  # noqa: E402

PASSWORD = "bench reviewer password"
BATCH = 8


def build(home: Path, images: int, model: str, reviewers: int) -> list[str]:
    """Index and label a generated world in ``home``; returns one API token per reviewer."""
    from labeler.labeling import bulk as labeling
    from labeler.ingest import run
    from labeler.core.prompts import load_prompt_set
    from labeler.demo_world import generate_world

    truth = generate_world(home.parent / "world", images, seed=11)
    collection = Collection(Config(home=home, model=model))
    run.index_paths(collection, [Path(truth).parent])
    labeling.label_collection(collection, load_prompt_set("workshop"))
    tokens = []
    with collection.session() as s:
        for n in range(reviewers):
            users.create_user(s, f"reviewer{n}", PASSWORD, "reviewer")
            tokens.append(users.issue_token(s, f"reviewer{n}"))
    db.dispose_engines()  # the server is another process: leave it the catalog, WAL folded in
    return tokens


@contextmanager
def served(home: Path, model: str, threads: int, log: Path) -> Iterator[int]:
    """``manage.py serve`` on a free port until the block ends; yields the port.

    Its output goes to ``log``, not a pipe: under load waitress warns about its task queue, and a
    pipe nobody reads fills up and stops the server mid-request.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = manage_argv("--home", home, "--model", model, "serve", "--threads", threads, "--port", port)
    # The per-user decision limit would cap what this measures: the server's capacity, not a reviewer's pace.
    env = {**os.environ, "LABELER_SECRET_KEY": "bench-review-load", "LABELER_DECISIONS_PER_MINUTE": "1000000"}
    with open(log, "w") as out:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):  # the server imports torch before it listens
            if process.poll() is not None:
                raise SystemExit(f"serve exited: {log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


@dataclass
class Tally:
    """One reviewer's counts; ``latencies`` in seconds, one per request."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    applied: int = 0
    single: int = 0
    bulk: int = 0
    errors: list[str] = field(default_factory=list)


class Reviewer:
    """One reviewer with its own keep-alive HTTP connection and token, deciding on its own labels."""

    def __init__(self, port: int, token: str, labels: list[dict], seed: int):
        self.port = port
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.versions = {label["id"]: label["version"] for label in labels}
        self.options = {label["id"]: label["options"] for label in labels}
        self.order = [label["id"] for label in labels]
        self.rng = random.Random(seed)
        self.tally = Tally()
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        started = time.perf_counter()
        try:
            self.conn.request("POST", path, json.dumps(body), self.headers)
            response = self.conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()  # a dropped keep-alive connection: one more try on a new one
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            self.conn.request("POST", path, json.dumps(body), self.headers)
            response = self.conn.getresponse()
            raw = response.read()
        self.tally.latencies.append(time.perf_counter() - started)
        self.tally.statuses[response.status] = self.tally.statuses.get(response.status, 0) + 1
        answer = json.loads(raw) if raw.startswith(b"{") else {}
        if response.status >= 500:
            self.tally.errors.append(f"{response.status} {path}: {raw[:200]!r}")
        return response.status, answer

    def bulk_accept(self, ids: list[int]) -> None:
        status, answer = self.post("/api/labels/accept-selected",
                                   {"labels": [{"id": i, "version": self.versions[i]} for i in ids]})
        self.tally.bulk += 1
        for result in answer.get("results", []):
            if result["status"] == "accepted":
                self.versions[result["id"]] = result["version"]
                self.tally.applied += 1
            elif result.get("current_version") is not None:
                self.versions[result["id"]] = result["current_version"]

    def decide(self, label_id: int, action: str, value: str | None = None) -> None:
        body = {"action": action, "version": self.versions[label_id], **({"value": value} if value else {})}
        status, answer = self.post(f"/api/labels/{label_id}/review", body)
        self.tally.single += 1
        if status == 200:
            self.versions[label_id] = answer["label"]["version"]
            self.tally.applied += 1
        elif status == 409 and answer.get("current_version") is not None:
            self.versions[label_id] = answer["current_version"]

    def work(self, until: float) -> None:
        position = 0
        while time.perf_counter() < until:
            ids = [self.order[(position + k) % len(self.order)] for k in range(BATCH)]
            position += BATCH
            self.bulk_accept(ids)
            undo, reject, correct, accept = self.rng.sample(ids, 4)
            self.decide(undo, "undo")
            self.decide(reject, "reject")
            self.decide(correct, "correct", self.rng.choice(self.options[correct] or ["other"]))
            self.decide(accept, "accept")
        self.conn.close()


def run(home: Path, model: str, tokens: list[str], seconds: float, threads: int) -> dict:
    collection = Collection(Config(home=home, model=model))
    with collection.session() as s:
        events_before = s.scalar(select(func.count()).select_from(ReviewEvent))
    with served(home, model, threads, home / "serve.log") as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("GET", "/api/labels?limit=500&sort=id", headers={"Authorization": f"Bearer {tokens[0]}"})
        first = json.loads(conn.getresponse().read())
        total = first["total"]
        labels = first["labels"]
        while len(labels) < total:  # every label of the collection, page by page
            conn.request("GET", f"/api/labels?limit=500&sort=id&offset={len(labels)}",
                         headers={"Authorization": f"Bearer {tokens[0]}"})
            labels += json.loads(conn.getresponse().read())["labels"]
        conn.close()
        n = len(tokens)
        reviewers = [Reviewer(port, token, labels[i::n], seed=i) for i, token in enumerate(tokens)]
        start = threading.Barrier(n + 1)  # every reviewer starts at once, when all are ready
        deadline: list[float] = []

        def timed(reviewer: Reviewer) -> None:
            start.wait()
            reviewer.work(deadline[0])

        workers = [threading.Thread(target=timed, args=(r,)) for r in reviewers]
        for worker in workers:
            worker.start()
        deadline.append(time.perf_counter() + seconds)  # set before the barrier lets anyone through
        began = time.perf_counter()
        start.wait()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - began
    with collection.session() as s:
        events = s.scalar(select(func.count()).select_from(ReviewEvent)) - events_before
    db.dispose_engines()
    tallies = [r.tally for r in reviewers]
    latencies = np.array([t for tally in tallies for t in tally.latencies]) * 1000
    statuses: dict[int, int] = {}
    for tally in tallies:
        for status, count in tally.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    applied = sum(t.applied for t in tallies)
    return {
        "reviewers": n, "seconds": round(elapsed, 2), "labels": len(labels), "server_threads": threads,
        "requests": int(len(latencies)), "bulk_requests": sum(t.bulk for t in tallies),
        "single_requests": sum(t.single for t in tallies),
        "decisions_applied": applied, "decisions_per_second": round(applied / elapsed, 1),
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)), 1) if len(latencies) else None,
        "p99_ms": round(float(np.percentile(latencies, 99)), 1) if len(latencies) else None,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors_5xx": sum(v for k, v in statuses.items() if k >= 500),
        "conflicts_409": statuses.get(409, 0),
        "review_events": events, "events_match": events == applied,
        "first_errors": [e for t in tallies for e in t.errors][:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviewers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the reviewers work")
    parser.add_argument("--images", type=int, default=500, help="images in the generated collection")
    parser.add_argument("--threads", type=int, default=8, help="waitress threads (serve's default)")
    parser.add_argument("--model", default=TINY_NAME)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-review-load-") as tmp:
        home = Path(tmp) / "home"
        started = time.perf_counter()
        tokens = build(home, args.images, args.model, args.reviewers)
        build_seconds = time.perf_counter() - started
        result = run(home, args.model, tokens, args.seconds, args.threads)
    result["build_seconds"] = round(build_seconds, 1)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['reviewers']} reviewers for {result['seconds']} s on {result['labels']:,} labels "
              f"(serve --threads {result['server_threads']}; collection built in {result['build_seconds']} s)")
        print(f"  requests:   {result['requests']:,} ({result['bulk_requests']:,} bulk of {BATCH}, "
              f"{result['single_requests']:,} single), {result['requests_per_second']}/s")
        print(f"  decisions:  {result['decisions_applied']:,} applied, {result['decisions_per_second']}/s")
        print(f"  latency:    p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms")
        print(f"  answers:    {result['statuses']}; 5xx: {result['errors_5xx']}, 409: {result['conflicts_409']}")
        print(f"  events:     {result['review_events']:,} review events "
              f"{'==' if result['events_match'] else '!='} {result['decisions_applied']:,} applied decisions")
        for error in result["first_errors"]:
            print(f"  error: {error}")
    sys.exit(0 if result["errors_5xx"] == 0 and result["events_match"] else 1)


if __name__ == "__main__":
    main()
