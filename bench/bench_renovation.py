#!/usr/bin/env python
"""Nothing got slower: this checkout against another one (the code before a refactor), in one run.

Three jobs, each run ``--repeat`` times per checkout, the two checkouts alternating so both see
the same load; the best run of each counts (on a shared machine the others measure the neighbours):

* **main job**: ``manage.py --home TMP demo --no-serve --json --count N`` (generate, index, label
  in eight groups), wall time of the process;
* **label at 100k**: ``bench/bench_label.py --images 100000 --json``, its vectorised seconds;
* **embed**: ``bench/bench_embed.py --model labeler-tiny --images M --modes fp32``, labeler's
  end-to-end img/s (each checkout's own bare open_clip row is printed beside it).

Each bench runs with the checkout's own code (``PYTHONPATH`` = that checkout). A ratio is this
checkout's time over the baseline's (img/s: the baseline's over this one's), so above 1 is slower.
``label`` times scoring code the two checkouts may share: its ratio shows how even the load was.

    git worktree add --detach /tmp/base c0fdb98
    .venv/bin/python bench/bench_renovation.py /tmp/base [--count 300] [--embed-images 120] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(checkout: Path, argv: list[str], timeout: int = 1800) -> tuple[float, str]:
    """(wall seconds, stdout) of ``argv`` run in ``checkout`` with that checkout's labeler."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELER_")}
    env["PYTHONPATH"] = str(checkout)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, *argv], cwd=checkout, env=env, capture_output=True, text=True,
                          timeout=timeout)
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"{checkout}: {' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout


def main_job(checkout: Path, count: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_renovation.") as tmp:
        seconds, out = run(checkout, ["manage.py", "--home", str(Path(tmp) / "home"), "demo", "--no-serve",
                                      "--json", "--count", str(count)])
    return {"seconds": round(seconds, 2), "label_seconds": json.loads(out)["label"]["seconds"]}


def label(checkout: Path, images: int) -> dict:
    _, out = run(checkout, ["bench/bench_label.py", "--images", str(images), "--naive", "200", "--json"])
    data = json.loads(out[out.index("{"):])
    return {"seconds": data["vectorised_seconds"]}


def embed(checkout: Path, images: int) -> dict:
    _, out = run(checkout, ["bench/bench_embed.py", "--model", "labeler-tiny", "--images", str(images),
                            "--modes", "fp32"])
    rows = {line.split()[1]: line.split() for line in out.splitlines() if line.startswith(("labeler ", "bare "))}
    return {"img_s": float(rows["fp32"][2]), "bare_img_s": float(rows["open_clip"][2])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path, help="a checkout of the code to compare with")
    parser.add_argument("--count", type=int, default=300, help="images in the main job's demo world")
    parser.add_argument("--label-images", type=int, default=100_000)
    parser.add_argument("--embed-images", type=int, default=120)
    parser.add_argument("--repeat", type=int, default=3, help="runs per checkout and job; the best counts")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    base, here = args.baseline.resolve(), ROOT
    results: dict[str, dict] = {}
    for name, job, size, key, best in (("main job", main_job, args.count, "seconds", min),
                                       ("label", label, args.label_images, "seconds", min),
                                       ("embed", embed, args.embed_images, "img_s", max)):
        runs: dict[str, list[dict]] = {"baseline": [], "this": []}
        for turn in range(args.repeat):
            order = [("baseline", base), ("this", here)]
            for side, checkout in (order if turn % 2 == 0 else order[::-1]):
                runs[side].append(job(checkout, size))
        results[name] = {side: {**best(found, key=lambda r: r[key]), "runs": [r[key] for r in found]}
                         for side, found in runs.items()}
    ratios = {
        "main job": results["main job"]["this"]["seconds"] / results["main job"]["baseline"]["seconds"],
        "label": results["label"]["this"]["seconds"] / results["label"]["baseline"]["seconds"],
        "embed": results["embed"]["baseline"]["img_s"] / results["embed"]["this"]["img_s"],
    }
    if args.json:
        print(json.dumps({"results": results, "ratios": {k: round(v, 3) for k, v in ratios.items()}}, indent=2))
        return
    print(f"baseline {base}, this {here}, {os.cpu_count()} cores; ratio = this / baseline time (>1: slower)")
    print(f"main job ({args.count} images): {results['main job']['baseline']['seconds']:.1f} s -> "
          f"{results['main job']['this']['seconds']:.1f} s, ratio {ratios['main job']:.3f} (its label step "
          f"{results['main job']['baseline']['label_seconds']:.2f} s -> {results['main job']['this']['label_seconds']:.2f} s)")
    print(f"label ({args.label_images} images, scoring): {results['label']['baseline']['seconds']:.3f} s -> "
          f"{results['label']['this']['seconds']:.3f} s, ratio {ratios['label']:.3f}")
    print(f"embed ({args.embed_images} photos, labeler-tiny fp32): {results['embed']['baseline']['img_s']:.1f} -> "
          f"{results['embed']['this']['img_s']:.1f} img/s (bare open_clip {results['embed']['baseline']['bare_img_s']:.1f}"
          f" / {results['embed']['this']['bare_img_s']:.1f}), ratio {ratios['embed']:.3f}")


if __name__ == "__main__":
    main()
