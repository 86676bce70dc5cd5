#!/usr/bin/env python
"""Bench the map of the collection (issue 26, part 3): the layout at scale, and /map in Chromium.

``layout HOME``: on HOME (a copy of the 1M home: this writes), fits the map from scratch (``map
--refit``: a sample fitted with PCA then openTSNE, the rest placed by FAISS k-NN, every position
written), then takes the places of ``--new`` images that are not anchors away and times the
update that places them again (what ``map`` does after an index run added that many images). The
ratio is the refit's time over the update's, both measured in this run.

``browser HOME``: serves HOME (it must hold a map and an account ``bench``/``bench-password``;
``--prepare`` makes both) with the real server and measures, in Debian's Chromium through
Playwright, the first paint of /map (navigation start to the canvas's first drawn answer, cold:
the server's first read of the places, and warm: a second visit) and the frames per second while
the view is panned then zoomed for two seconds each. The ratio is the first paint over the
plain review queue's load in the same run.

    PYTHONPATH=. .venv/bin/python bench/bench_map.py layout /work/homes/me-1m [--new 10000] [--update-only] [--json]
    PYTHONPATH=. .venv/bin/python bench/bench_map.py browser HOME [--prepare] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import delete, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labeler.collection import Collection  # noqa: E402
from labeler.config import Config  # noqa: E402
from labeler.curation.maps import update_map  # noqa: E402
from labeler.encoding.model_spec import TINY_NAME  # noqa: E402
from labeler.store.catalog import MapPosition  # noqa: E402

PASSWORD = "bench-password"


def cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        name = platform.processor()
    return f"{name}, {os.cpu_count()} cores"


def bench_layout(home: Path, new: int, update_only: bool = False) -> dict:
    collection = Collection(Config(home=home, model=TINY_NAME))
    started = time.perf_counter()
    with collection.session() as s:
        fitted = update_map(s, collection, refit=not update_only)
    refit = time.perf_counter() - started if not update_only else None
    with collection.session() as s:
        model_id = collection.models.require_id(s)
        gone = list(s.scalars(select(MapPosition.image_id).where(MapPosition.model_id == model_id,
                                                                 MapPosition.anchor.is_(False))
                              .order_by(MapPosition.image_id.desc()).limit(new)))
        for start in range(0, len(gone), 10_000):
            s.execute(delete(MapPosition).where(MapPosition.model_id == model_id,
                                                MapPosition.image_id.in_(gone[start:start + 10_000])))
    started = time.perf_counter()
    with collection.session() as s:
        updated = update_map(s, collection)
    update = time.perf_counter() - started
    return {"images": fitted["images"], "anchors": fitted["anchors"],
            "refit_seconds": round(refit, 1) if refit else None, "fit_seconds": fitted["fit_seconds"],
            "new": updated["placed"], "update_seconds": round(update, 2),
            "ratio_refit_over_update": round(refit / update, 1) if refit else None}


def prepare(home: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    manage = [sys.executable, str(ROOT / "manage.py"), "--home", str(home), "--model", TINY_NAME]
    subprocess.run([*manage, "map", "--json"], check=True, env=env, stdout=subprocess.DEVNULL)
    added = subprocess.run([*manage, "user", "add", "bench", "--role", "admin", "--password-stdin"],
                           input=PASSWORD + "\n", text=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if added.returncode != 0:  # another bench made the account (bench_queue's reviewer): this password
        subprocess.run([*manage, "user", "passwd", "bench", "--password-stdin"], input=PASSWORD + "\n", text=True,
                       env=env, check=True, stdout=subprocess.DEVNULL)


FPS_SCRIPT = """async ([kind, ms]) => {
  const canvas = document.querySelector('[data-testid="map-canvas"]');
  const rect = canvas.getBoundingClientRect();
  const cx = rect.left + rect.width / 2, cy = rect.top + rect.height / 2;
  const before = window.labelerMap.frames;
  const started = performance.now();
  if (kind === 'pan') canvas.dispatchEvent(new MouseEvent('mousedown', {clientX: cx, clientY: cy, bubbles: true}));
  let step = 0;
  await new Promise((done) => {
    function frame() {
      step++;
      if (kind === 'pan') {
        window.dispatchEvent(new MouseEvent('mousemove', {clientX: cx + 100 * Math.sin(step / 10), clientY: cy, bubbles: true}));
      } else {
        canvas.dispatchEvent(new WheelEvent('wheel', {clientX: cx, clientY: cy, deltaY: step % 40 < 20 ? -50 : 50, bubbles: true, cancelable: true}));
      }
      if (performance.now() - started < ms) requestAnimationFrame(frame); else done();
    }
    requestAnimationFrame(frame);
  });
  if (kind === 'pan') window.dispatchEvent(new MouseEvent('mouseup', {bubbles: true}));
  return (window.labelerMap.frames - before) / ((performance.now() - started) / 1000);
}"""


def bench_browser(home: Path) -> dict:
    from playwright.sync_api import sync_playwright
    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, serving

    with serving(home, TINY_NAME) as url:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            page = browser.new_context(base_url=url, viewport=VIEWPORT).new_page()
            page.set_default_timeout(120_000)
            page.goto("/auth/login")
            page.get_by_test_id("login-username").fill("bench")
            page.get_by_test_id("login-password").fill(PASSWORD)
            page.get_by_test_id("login-submit").click()
            page.get_by_test_id("current-user").wait_for()
            paints = []
            for _ in range(2):  # cold (the server reads the places), then warm
                started = time.perf_counter()
                page.goto("/map")
                page.wait_for_selector('[data-testid="map-canvas"][data-painted]')
                paints.append(time.perf_counter() - started)
            pan = page.evaluate(FPS_SCRIPT, ["pan", 2000])
            zoom = page.evaluate(FPS_SCRIPT, ["zoom", 2000])
            total = page.evaluate("() => JSON.parse(document.getElementById('map-data').textContent).total")
            started = time.perf_counter()
            page.goto("/review")
            page.get_by_test_id("queue-total").wait_for()
            queue = time.perf_counter() - started
            browser.close()
    return {"images": total, "first_paint_cold_s": round(paints[0], 2), "first_paint_warm_s": round(paints[1], 2),
            "queue_load_s": round(queue, 2), "ratio_paint_over_queue": round(paints[1] / queue, 2),
            "pan_fps": round(pan, 1), "zoom_fps": round(zoom, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["layout", "browser"])
    parser.add_argument("home", type=Path)
    parser.add_argument("--new", type=int, default=10_000)
    parser.add_argument("--update-only", action="store_true",
                        help="layout: keep the fitted map, time only the update (no ratio)")
    parser.add_argument("--prepare", action="store_true", help="browser: run `map` and add the bench account first")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    if args.what == "layout":
        result = bench_layout(args.home, args.new, args.update_only)
    else:
        if args.prepare:
            prepare(args.home)
        result = bench_browser(args.home)
    result.update({"cpu": cpu(), "load_before": round(load, 1), "load_after": round(os.getloadavg()[0], 1)})
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
