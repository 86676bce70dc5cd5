#!/usr/bin/env python
"""The price of the Ray engine: ``manage.py index`` with the local runner and with ``--engine ray``.

Generates photo-like JPEGs, then indexes them into two fresh homes in the same run, each as a
real ``manage.py`` subprocess: the local runner, and ``--engine ray --address`` on a one-node
Ray cluster started beforehand (as on a real cluster, whose start-up is not the job's). Also
times ``--engine ray`` starting its own cluster (cold). Prints img/s from each report's
``seconds`` (walk to last write, model load included) and the ratios to the local runner.

The default model is ViT-B-32 with random weights (same speed as trained ones, nothing to
download); ``--model labeler-tiny`` makes loading, not the model, the bound.

    .venv/bin/python bench/bench_ray.py [--count 500] [--size 1024x768] [--model vit-b-32-random]
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
sys.path.insert(0, str(ROOT))

from bench.bench_decode import make_photos  # noqa: E402
from tests.raycluster import ray_head  # noqa: E402


def random_vit(folder: Path) -> str:
    """A ViT-B-32 weights file with random weights; returns its model spec."""
    import open_clip
    import torch

    path = folder / "vit-b-32-random.pt"
    torch.manual_seed(0)
    torch.save(open_clip.create_model("ViT-B-32").state_dict(), path)
    return f"ViT-B-32:{path}"


def index(home: Path, photos: Path, model: str, *flags: str, env: dict | None = None) -> dict:
    """``manage.py index --json`` in a subprocess; the report plus the command's wall time."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(ROOT / "manage.py"), "--home", str(home), "--model", model,
                           "index", str(photos), "--json", *flags], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    if done.returncode != 0:
        raise SystemExit(f"manage.py index {' '.join(flags)} failed:\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout)
    report["wall"] = time.monotonic() - started
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--size", default="1024x768")
    parser.add_argument("--model", default="vit-b-32-random", help="a model spec, or vit-b-32-random")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = random_vit(tmp) if args.model == "vit-b-32-random" else args.model
        photos = tmp / "photos"
        photos.mkdir()
        make_photos(photos, args.count, size)
        rows = []
        with ray_head(num_cpus=cores) as head:
            # Warm both: the page cache for the photos, Ray's idle worker processes for its tasks.
            warm = tmp / "warm"
            warm.mkdir()
            make_photos(warm, 8, size)
            index(tmp / "warm-local", warm, model)
            index(tmp / "warm-ray", warm, model, "--address", head.address, env=head.env)
            rows.append(("local runner", index(tmp / "local", photos, model)))
            rows.append(("ray, running cluster", index(tmp / "ray", photos, model, "--address", head.address,
                                                       env=head.env)))
        rows.append(("ray, starts its own", index(tmp / "ray-cold", photos, model, "--engine", "ray")))

    base = rows[0][1]
    print(f"{args.count} JPEG {size[0]}x{size[1]}, model {args.model}, {cores} cores")
    print(f"{'runner':<22} {'embedded':>8} {'img/s':>7} {'vs local':>8} {'command s':>9}")
    for name, report in rows:
        rate = report["embedded"] / report["seconds"]
        print(f"{name:<22} {report['embedded']:>8} {rate:>7.1f} {base['seconds'] / report['seconds']:>8.2f} "
              f"{report['wall']:>9.1f}")
    print("img/s: embedded / the report's seconds (walk to last write, model load included)")


if __name__ == "__main__":
    main()
