#!/usr/bin/env python
"""The price of the Ray engine: ``manage.py index`` with the local runner and with ``--engine ray``.

Generates photo-like JPEGs, then indexes them into two fresh homes in the same run, each as a
real ``manage.py`` subprocess: the local runner, and ``--engine ray --address`` on a one-node
Ray cluster started beforehand (as on a real cluster, whose start-up is not the job's). Also
times ``--engine ray`` starting its own cluster (cold). The local and Ray runs alternate over
``--rounds`` (which goes first swaps each round), so a neighbour's load falls on both alike.
Prints the median img/s from each report's ``seconds`` (walk to last write, model load and Ray's
start-up included), the ratio to the local runner, and the ratio of each round's pair. Each round
also indexes the first ``--small`` photos; the difference between the two runs gives the steady
(marginal) img/s, without the fixed start-up, which is printed apart.

The default model is ViT-B-32 with random weights (same speed as trained ones, nothing to
download); ``--model labeler-tiny`` makes loading, not the model, the bound.

    .venv/bin/python bench/bench_ray.py [--count 500] [--rounds 3] [--size 1024x768] [--model vit-b-32-random]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
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


def rate(report: dict) -> float:
    return report["embedded"] / report["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--size", default="1024x768")
    parser.add_argument("--model", default="vit-b-32-random", help="a model spec, or vit-b-32-random")
    parser.add_argument("--rounds", type=int, default=3, help="local and ray runs, alternating which goes first")
    parser.add_argument("--small", type=int, default=100,
                        help="photos in a second, smaller run per round: the difference gives the steady img/s")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    cores = os.cpu_count() or 1
    runs: dict[str, list[dict]] = {"local": [], "ray": []}
    small_runs: dict[str, list[dict]] = {"local": [], "ray": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = random_vit(tmp) if args.model == "vit-b-32-random" else args.model
        photos = tmp / "photos"
        photos.mkdir()
        make_photos(photos, args.count, size)
        few = tmp / "few"
        few.mkdir()
        for path in sorted(photos.iterdir())[:args.small]:
            shutil.copy(path, few / path.name)
        with ray_head(num_cpus=cores) as head:
            def local(home: Path, folder: Path) -> dict:
                return index(home, folder, model)

            def ray(home: Path, folder: Path) -> dict:
                return index(home, folder, model, "--address", head.address, env=head.env)

            # Warm both: the page cache for the photos, the ONNX export, Ray's worker processes.
            warm = tmp / "warm"
            warm.mkdir()
            make_photos(warm, 8, size)
            index(tmp / "warm-local", warm, model)
            index(tmp / "warm-ray", warm, model, "--address", head.address, env=head.env)
            # Alternating which goes first: a neighbour's load falls on both alike.
            for n in range(args.rounds):
                order = ("local", "ray") if n % 2 == 0 else ("ray", "local")
                for name in order:
                    run = local if name == "local" else ray
                    runs[name].append(run(tmp / f"{name}-{n}", photos))
                    small_runs[name].append(run(tmp / f"{name}-{n}-small", few))
        cold = index(tmp / "ray-cold", photos, model, "--engine", "ray")

    local_rate = statistics.median(rate(r) for r in runs["local"])
    print(f"{args.count} JPEG {size[0]}x{size[1]}, model {args.model}, {cores} cores, {args.rounds} rounds")
    print(f"{'runner':<24} {'embedded':>8} {'img/s':>7} {'vs local':>8}  per round (img/s)")
    rows = [("local runner", runs["local"]), ("ray, running cluster", runs["ray"]), ("ray, starts its own", [cold])]
    for name, reports in rows:
        rates = [rate(r) for r in reports]
        median = statistics.median(rates)
        print(f"{name:<24} {reports[0]['embedded']:>8} {median:>7.1f} {median / local_rate:>8.2f}  "
              + " ".join(f"{r:.1f}" for r in rates))
    pairs = [rate(r) / rate(b) for r, b in zip(runs["ray"], runs["local"])]
    print("ray / local per round: " + " ".join(f"{p:.2f}" for p in pairs))
    # Steady: the images between the small and the full run over the seconds between them, so the
    # fixed costs (model load, Ray's job and actor start-up) cancel; start-up: what is left of the small run.
    steady = {name: [(big["embedded"] - few["embedded"]) / (big["seconds"] - few["seconds"])
                     for big, few in zip(runs[name], small_runs[name])] for name in runs}
    print(f"{'steady (marginal)':<24} {'img/s':>8} {'vs local':>8}  start-up s (median)")
    for name in ("local", "ray"):
        median = statistics.median(steady[name])
        startup = statistics.median(f["seconds"] - f["embedded"] / s for f, s in zip(small_runs[name], steady[name]))
        print(f"{name:<24} {median:>8.1f} {median / statistics.median(steady['local']):>8.2f}  {startup:.1f}")
    print("img/s: embedded / the report's seconds (walk to last write, model load and Ray's start-up "
          "included); medians over the rounds; 'starts its own' includes starting the cluster")


if __name__ == "__main__":
    main()
