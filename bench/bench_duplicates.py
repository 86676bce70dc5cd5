#!/usr/bin/env python
"""Bench ``duplicates --level near`` for recall and precision on a world with known copies (issue 26).

A generated workshop world of ``--images`` distinct images (seed ``--seed``), plus ``--copies``
copies of randomly chosen ones, made here by code of its own (not labeler's calibration copies,
and never tuned against it): JPEG re-encodes at quality 50-90, resizes to 40-90 %, crops of up
to 8 % and a colour-profile change (the pixels read as Adobe RGB, untagged). The truth (which
copy comes from which original) goes in ``copies.csv``. Everything is indexed with labeler-tiny,
then ``manage.py duplicates --level near --json`` runs as a user runs it, and we count:

* pair recall: copy–original pairs whose two images are in one near group;
* precision: images in near groups that are a copy of (or the original of) another image in
  their group, over all images in near groups;
* merged distinct: pairs of distinct world images (neither a copy of the other) in one group.

    PYTHONPATH=. .venv/bin/python bench/bench_duplicates.py WORKDIR [--images 2000] [--copies 300] [--seed 2601]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labeler.demo_world import generate_world  # noqa: E402

KINDS = ("jpeg", "resize", "crop", "profile")
# Adobe RGB (1998) to XYZ, XYZ to sRGB: sRGB pixels shown as if they were Adobe RGB
_ADOBE_TO_XYZ = np.array([[0.5767, 0.1856, 0.1882], [0.2974, 0.6273, 0.0753], [0.0270, 0.0707, 0.9911]])
_XYZ_TO_SRGB = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])


def as_adobe(img: Image.Image) -> Image.Image:
    a = (np.asarray(img.convert("RGB"), np.float64) / 255.0) ** 2.2
    lin = np.clip(a @ (_XYZ_TO_SRGB @ _ADOBE_TO_XYZ).T, 0, 1)
    out = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)
    return Image.fromarray(np.round(out * 255).astype(np.uint8))


def copy_of(img: Image.Image, kind: str, rng: np.random.Generator) -> tuple[Image.Image, str, str]:
    """(copy, file suffix, what was done)."""
    img = img.convert("RGB")
    if kind == "jpeg":
        q = int(rng.integers(50, 91))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=q)
        return Image.open(io.BytesIO(buf.getvalue())), "jpg", f"quality {q}"
    if kind == "resize":
        f = float(rng.uniform(0.4, 0.9))
        return img.resize((round(img.width * f), round(img.height * f)), Image.Resampling.LANCZOS), "png", f"{f:.2f}"
    if kind == "crop":
        w, h = img.size
        left, top = (int(rng.integers(0, round(0.04 * s) + 1)) for s in (w, h))
        right, bottom = (int(rng.integers(0, round(0.04 * s) + 1)) for s in (w, h))
        return img.crop((left, top, w - right, h - bottom)), "png", f"{left},{top},{right},{bottom}"
    return as_adobe(img), "png", "adobe rgb"


def make(work: Path, images: int, copies: int, seed: int) -> tuple[Path, list[dict]]:
    world = work / "world"
    if not (world / "truth.csv").exists():
        generate_world(world, images, seed=seed)
    rng = np.random.default_rng(seed + 1)
    originals = sorted(p for p in world.iterdir() if p.name.startswith("img_"))
    chosen = rng.choice(len(originals), copies, replace=False)
    out = world / "copies"
    out.mkdir(exist_ok=True)
    truth = []
    for n, k in enumerate(chosen):
        kind = KINDS[int(rng.integers(len(KINDS)))]
        copy, suffix, how = copy_of(Image.open(originals[k]), kind, rng)
        path = out / f"copy_{n:04d}.{suffix}"
        copy.save(path, **({"quality": 95} if suffix == "jpg" else {}))
        truth.append({"copy": str(path), "original": str(originals[k]), "kind": kind, "how": how})
    with (work / "copies.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["copy", "original", "kind", "how"])
        writer.writeheader()
        writer.writerows(truth)
    return world, truth


def manage(home: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(ROOT / "manage.py"), "--home", str(home), *args],
                          cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def score(report: dict, truth: list[dict]) -> dict:
    family = {}
    for row in truth:
        family[row["original"]] = row["original"]
        family[row["copy"]] = row["original"]
    group_of = {}
    in_groups = 0
    correct = 0
    merged_distinct = 0
    for group in report["groups"]:
        paths = [img["path"] for img in group["images"]]
        in_groups += len(paths)
        counts = defaultdict(int)
        for p in paths:
            group_of[p] = group["id"]
            counts[family.get(p, p)] += 1
        correct += sum(1 for p in paths if counts[family.get(p, p)] >= 2)
        fams = [f for f in counts]
        merged_distinct += sum(counts[a] * counts[b] for i, a in enumerate(fams) for b in fams[i + 1:])
    together = [row for row in truth if row["copy"] in group_of and group_of[row["copy"]] == group_of.get(row["original"])]
    by_kind = {k: [sum(1 for r in together if r["kind"] == k), sum(1 for r in truth if r["kind"] == k)] for k in KINDS}
    return {"pairs": len(truth), "pairs_together": len(together), "pair_recall": round(len(together) / len(truth), 4),
            "images_in_groups": in_groups, "images_truly_copies": correct,
            "precision": round(correct / in_groups, 4) if in_groups else None,
            "merged_distinct_pairs": merged_distinct, "recall_by_kind": by_kind}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--copies", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2601)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    world, truth = make(args.work, args.images, args.copies, args.seed)
    home = args.work / "home"
    manage(home, "index", str(world), "--json")
    made = time.perf_counter() - started
    t = time.perf_counter()
    report = json.loads(manage(home, "duplicates", "--level", "near", "--json").stdout)
    seconds = time.perf_counter() - t
    result = {"images": args.images, "copies": args.copies, "seed": args.seed, "world_and_index_s": round(made, 1),
              "duplicates_s": round(seconds, 1), **score(report, truth),
              "threshold": report["threshold"], "verification": report["verification"],
              "calibration": {k: report["calibration"].get(k) for k in
                              ("near", "scene", "pixels", "colour", "residual", "aligned_colour", "look")}
              if report.get("calibration") else None,
              "cpu": platform.processor() or platform.machine(), "load": os.getloadavg()[0]}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
