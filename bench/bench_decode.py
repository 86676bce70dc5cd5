"""Decode + thumbnail + model input for large JPEG photos: labeler's path against a plain baseline.

labeler's path uses PIL's JPEG draft mode and a thread pool (``prefetch_map``); the baseline
decodes every photo at full size, one after another. Both produce the same outputs (thumbnail
bytes and the model's input tensor). Prints images/second for each and the ratio, measured in
the same run.

    .venv/bin/python bench/bench_decode.py [--count 48] [--size 3000x2000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from labeler.config import Config  # noqa: E402
from labeler.encoding.encoder import load_encoder  # noqa: E402
from labeler.ingest.walk import load_file  # noqa: E402
from labeler.ingest.pipeline import prefetch_map  # noqa: E402


def make_photos(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    rng = np.random.default_rng(0)
    small = (size[0] // 16, size[1] // 16)
    paths = []
    for i in range(count):
        # Smooth content, like a photo, rather than noise that no codec would see.
        base = rng.integers(0, 256, (small[1], small[0], 3), dtype=np.uint8)
        img = Image.fromarray(base).resize(size, Image.Resampling.BICUBIC)
        path = folder / f"photo_{i:03d}.jpg"
        img.save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=48)
    parser.add_argument("--size", default="3000x2000")
    parser.add_argument("--model", default="labeler-tiny")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    encoder = load_encoder(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = make_photos(tmp, args.count, size)
        config = Config(home=tmp / "home")
        draft = max(config.thumbnail_size, encoder.image_size)

        def labeler_path(path: Path):
            return load_file(path, config, preprocess=encoder.preprocess, draft_size=draft)

        def baseline(path: Path):
            return load_file(path, config, preprocess=encoder.preprocess, draft_size=None)

        for fn in (labeler_path, baseline):  # warm caches
            fn(paths[0])

        t0 = time.perf_counter()
        for p in paths:
            assert baseline(p).error is None
        base_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for loaded in prefetch_map(pool, labeler_path, paths, depth=16):
                assert loaded.error is None
        fast_s = time.perf_counter() - t0

    print(f"photos: {args.count} JPEG {size[0]}x{size[1]}, {os.cpu_count()} cores, model input {encoder.image_size}px")
    print(f"baseline (full decode, sequential): {args.count / base_s:8.1f} images/s")
    print(f"labeler  (draft mode, threads):     {args.count / fast_s:8.1f} images/s")
    print(f"ratio: {base_s / fast_s:.1f}x")


if __name__ == "__main__":
    main()
