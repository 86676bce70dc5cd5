#!/usr/bin/env python
"""Bench the review UI keyboard-only, as an annotator uses it, in Debian's Chromium.

Builds the demo collection (``manage.py demo``: the generated world with its truth.csv, indexed and
labeled with labeler-tiny), adds a reviewer, serves it (``manage.py serve``, waitress) and drives the
queue with Playwright, keys only:

1. **Review**: ``--labels`` labels over ``--groups``, most uncertain first. For the focused card it
   accepts (``a``) when the proposal matches truth.csv, presses the true option's key when it has
   one, rejects (``r``) when truth has no value, else corrects by typing (``c``, the value, Enter).
   Prints decisions per minute and keys per decision per group, and how many decisions the catalog
   holds that disagree with truth (0 when every key did what it says).
2. **Dropped keys**: ``--burst`` presses of ``a`` at ``--rate`` keys/s on another group, across a
   batch boundary; dropped = presses - decisions in the catalog.
3. **Paging**: 5 pages of a third group through the queue's own "next" links, accepting every other
   label between pages (as a reviewer does); counts labels skipped and shown twice. The baseline is the
   old offset paging (``/api/labels?offset=``) walked the same way in the same run.

    .venv/bin/python bench/bench_review_ui.py [--images 300] [--labels 200] [--groups concept,material]
        [--rate 10] [--burst 60] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.cli import manage  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_review_load import served  # noqa: E402

PASSWORD = "bench review ui password"
USER = "annie"
PAGE_SIZE = 48

# The focused card as the bench reads it: the page's own data, never the server's.
FOCUSED = """() => {
  const card = document.querySelector('[data-testid="card"].focused');
  if (!card) return null;
  return {id: Number(card.dataset.labelId), name: card.getAttribute("aria-label").split(": ")[0],
          value: card.querySelector('[data-testid="value"]').textContent};
}"""


def build(home: Path, images: int, model: str) -> Path:
    manage("--home", home, "--model", model, "demo", "--count", images, "--seed", 3, "--no-serve", "--json",
           expect=0, timeout=3600)
    manage("--home", home, "--model", model, "user", "add", USER, "--role", "reviewer", "--password-stdin",
           stdin=PASSWORD + "\n", expect=0)
    return home / "demo-world" / "truth.csv"


def read_truth(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as fh:
        return {Path(row["file"]).name: row for row in csv.DictReader(fh)}


def catalog(home: Path, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(f"file:{home / 'catalog.db'}?mode=ro", uri=True) as db:
        return db.execute(sql, params).fetchall()


def login(page) -> None:
    page.goto("/auth/login")
    page.get_by_test_id("login-username").fill(USER)
    page.get_by_test_id("login-password").fill(PASSWORD)
    page.get_by_test_id("login-submit").click()
    page.get_by_test_id("current-user").wait_for()


def open_queue(page, group: str, sort: str = "uncertainty") -> dict:
    page.goto(f"/review?group={group}&status=proposed&sort={sort}")
    page.wait_for_selector('[data-testid="card"].focused')
    return json.loads(page.locator("#review-data").text_content())


def review_group(page, group: str, quota: int, truth: dict) -> dict:
    """Review ``quota`` labels of ``group`` keyboard-only; returns keys, decisions and seconds."""
    data = open_queue(page, group)
    keys = data["keys"][group]
    pressed = decided = 0
    start = time.perf_counter()
    while decided < quota:
        page.wait_for_function(FOCUSED)  # null only while the next batch is still on its way
        card = page.evaluate(FOCUSED)
        want = truth[card["name"]][group]
        if not want:
            page.keyboard.press("r")
            pressed += 1
        elif card["value"] == want:
            page.keyboard.press("a")
            pressed += 1
        elif want in keys:
            page.keyboard.press(keys[want])
            pressed += 1
        else:
            page.keyboard.press("c")
            page.keyboard.type(want)
            page.keyboard.press("Enter")
            pressed += 2 + len(want)
        decided += 1
    page.wait_for_function("() => !document.querySelector('.card.pending')")  # every answer is in
    return {"decisions": decided, "keys": pressed, "seconds": time.perf_counter() - start,
            "keys_per_decision": round(pressed / decided, 3)}


def disagreements(home: Path, user_id: int, groups: list[str], truth: dict) -> int:
    rows = catalog(home, "SELECT l.\"group\", l.value, f.path FROM labels l JOIN image_files f ON f.image_id = l.image_id "
                   "WHERE l.reviewed_by = ? AND l.\"group\" IN (%s)" % ",".join("?" * len(groups)), user_id, *groups)
    return sum(1 for group, value, path in rows if (value or "") != truth[Path(path).name][group])


def burst(page, home: Path, user_id: int, group: str, presses: int, rate: float) -> dict:
    """``presses`` of ``a`` at ``rate`` keys/s; dropped = presses - decisions the catalog holds."""
    open_queue(page, group, sort="id")
    before = catalog(home, "SELECT COUNT(*) FROM labels WHERE \"group\" = ? AND reviewed_by = ?", group, user_id)[0][0]
    start = time.perf_counter()
    for n in range(presses):
        page.keyboard.press("a")
        time.sleep(max(0.0, start + (n + 1) / rate - time.perf_counter()))
    page.wait_for_function("() => !document.querySelector('.card.pending')")
    time.sleep(0.5)
    after = catalog(home, "SELECT COUNT(*) FROM labels WHERE \"group\" = ? AND reviewed_by = ?", group, user_id)[0][0]
    return {"presses": presses, "rate": rate, "decisions": after - before, "dropped": presses - (after - before)}


def walk_pages(page, group: str, pages: int, keyset: bool) -> dict:
    """Walk ``pages`` pages of the proposed queue of ``group`` in catalog order, accepting every
    other label between pages; counts what the walk skipped and showed twice."""
    api = page.request
    start = api.get(f"/api/labels?group={group}&status=proposed&sort=id&limit=500").json()["labels"]
    expected = [label["id"] for label in start][:pages * PAGE_SIZE]
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    shown: list[int] = []
    url = f"/review?group={group}&status=proposed&sort=id"
    for n in range(pages):
        if keyset:
            page.goto(url)
            data = json.loads(page.locator("#review-data").text_content())
            cards, url = data["cards"], data["next"]
        else:  # the old "next →": page n at offset n * 48
            cards = api.get(f"/api/labels?group={group}&status=proposed&sort=id&limit={PAGE_SIZE}"
                            f"&offset={n * PAGE_SIZE}").json()["labels"]
        shown += [card["id"] for card in cards]
        for card in cards[::2]:
            api.post(f"/api/labels/{card['id']}/review", data={"action": "accept", "version": card["version"]},
                     headers={"X-CSRF-Token": csrf})
        if keyset and not url:
            break
    return {"pages": pages, "shown": len(shown), "skipped": len(set(expected) - set(shown)),
            "repeated": len(shown) - len(set(shown))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--labels", type=int, default=200)
    parser.add_argument("--groups", default="concept,material")
    parser.add_argument("--rate", type=float, default=10.0, help="keys per second in the dropped-keys burst")
    parser.add_argument("--burst", type=int, default=60)
    parser.add_argument("--model", default="labeler-tiny")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    groups = args.groups.split(",")
    if args.images < 5 * PAGE_SIZE + args.burst:
        parser.error(f"--images must be at least {5 * PAGE_SIZE + args.burst} for 5 pages and the burst")

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bench-review-ui-") as tmp:
        home = Path(tmp) / "home"
        t0 = time.perf_counter()
        truth = read_truth(build(home, args.images, args.model))
        build_s = time.perf_counter() - t0
        user_id = catalog(home, "SELECT id FROM users WHERE name = ?", USER)[0][0]
        with served(home, args.model, 4, Path(tmp) / "server.log") as port, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            context = browser.new_context(base_url=f"http://127.0.0.1:{port}", viewport={"width": 1280, "height": 800})
            context.set_default_timeout(30_000)
            page = context.new_page()
            login(page)
            per_group = {}
            for i, group in enumerate(groups):
                quota = args.labels // len(groups) + (1 if i < args.labels % len(groups) else 0)
                per_group[group] = review_group(page, group, quota, truth)
            decisions = sum(g["decisions"] for g in per_group.values())
            seconds = sum(g["seconds"] for g in per_group.values())
            wrong = disagreements(home, user_id, groups, truth)
            dropped = burst(page, home, user_id, "color", args.burst, args.rate)
            keyset = walk_pages(page, "size", 5, keyset=True)
            offset = walk_pages(page, "context", 5, keyset=False)
            html = page.request.get("/review?group=concept&status=&sort=uncertainty").body()
            browser.close()
    report = {"images": args.images, "build_s": round(build_s, 1), "decisions": decisions,
              "decisions_per_minute": round(60 * decisions / seconds, 1), "wrong_after_review": wrong,
              "keys_per_decision": {g: r["keys_per_decision"] for g, r in per_group.items()},
              "groups": per_group, "dropped_keys": dropped, "paging_keyset": keyset, "paging_offset_baseline": offset,
              "queue_html_bytes": len(html)}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"review UI, keyboard only, {decisions} decisions on {args.images} demo images "
          f"(build {build_s:.0f} s, Chromium headless, labeler-tiny)")
    print(f"  decisions per minute: {report['decisions_per_minute']}  (the bot's pace: keys as fast as the page takes them)")
    for group, r in per_group.items():
        print(f"  {group:10s} keys per decision {r['keys_per_decision']:.3f}  ({r['keys']} keys, {r['decisions']} decisions)")
    print(f"  decisions that disagree with truth.csv afterwards: {wrong}")
    print(f"  dropped keys at {dropped['rate']:g} keys/s: {dropped['dropped']} of {dropped['presses']} "
          f"(across a {PAGE_SIZE}-card batch boundary)")
    print(f"  5 pages, accepting every other label between pages: keyset paging skipped {keyset['skipped']}, "
          f"repeated {keyset['repeated']}; the old offset paging skipped {offset['skipped']}, repeated {offset['repeated']}")
    print(f"  a queue page: {len(html)} bytes of HTML")


if __name__ == "__main__":
    main()
