#!/usr/bin/env python
"""Bench the labeling maths: the vectorised path against a naive Python loop over images.

100,000 random unit vectors (dim 512) against one group of 50 options with 10 prompts each,
scored with the ``weighted`` strategy, then softmax confidence and the top-two margin, which is
what ``manage.py label`` computes per chunk. The naive loop runs on a subset and its rate is
extrapolated. No model and no database: this times the scoring only.

    .venv/bin/python bench/bench_label.py [--images 100000] [--naive 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from labeler.core import scoring  # noqa: E402
from labeler.labeling.bulk import CHUNK_ROWS  # noqa: E402


def vectorised(images: np.ndarray, prompts: np.ndarray, owner: np.ndarray, weights: np.ndarray,
               baselines: np.ndarray, scale: float, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Answers ``[N]`` by chunks of matrix products, as labeling does."""
    answers = []
    for start in range(0, len(images), chunk_rows):
        chunk = images[start:start + chunk_rows]
        scores = scoring.option_scores("weighted", chunk, prompts, owner, weights, baselines)
        answers.append(scoring.decide(scoring.softmax_confidence(scores, scale)).choice)
    return np.concatenate(answers)


def naive(images: np.ndarray, prompts: np.ndarray, owner: np.ndarray, weights: np.ndarray, n_options: int,
          scale: float) -> list[int]:
    """The study's loop: for each image, for each prompt, one cosine; pool; softmax; pick."""
    prompt_list = prompts.tolist()
    answers = []
    for image in images.tolist():
        sums = [0.0] * n_options
        totals = [0.0] * n_options
        for p, vec in enumerate(prompt_list):
            cos = sum(a * b for a, b in zip(image, vec))
            sums[owner[p]] += weights[p] * cos
            totals[owner[p]] += weights[p]
        scores = [s / t for s, t in zip(sums, totals)]
        top = max(scores)
        exp = [math.exp(scale * (s - top)) for s in scores]
        total = sum(exp)
        conf = [e / total for e in exp]
        answers.append(max(range(n_options), key=conf.__getitem__))
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--naive", type=int, default=2_000, help="images for the naive loop (rate extrapolated)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--options", type=int, default=50)
    parser.add_argument("--prompts", type=int, default=10, help="prompts per option")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    images = scoring.unit(rng.standard_normal((args.images, args.dim)).astype(np.float32))
    prompts = scoring.unit(rng.standard_normal((args.options * args.prompts, args.dim)).astype(np.float32))
    owner = np.repeat(np.arange(args.options), args.prompts)
    weights = rng.uniform(0.5, 2.0, len(owner)).astype(np.float32)
    baselines = prompts[::args.prompts]
    scale = 100.0

    vectorised(images[:1000], prompts, owner, weights, baselines, scale)  # warm up BLAS
    started = time.perf_counter()
    fast = vectorised(images, prompts, owner, weights, baselines, scale)
    fast_seconds = time.perf_counter() - started

    subset = images[:args.naive]
    started = time.perf_counter()
    slow = naive(subset, prompts, owner.tolist(), weights.tolist(), args.options, scale)
    naive_seconds = time.perf_counter() - started
    agree = float(np.mean(np.asarray(slow) == fast[:args.naive]))

    fast_rate = args.images / fast_seconds
    naive_rate = args.naive / naive_seconds
    result = {
        "images": args.images, "dim": args.dim, "options": args.options, "prompts_per_option": args.prompts,
        "vectorised_seconds": round(fast_seconds, 3), "vectorised_images_per_second": round(fast_rate),
        "naive_images": args.naive, "naive_seconds": round(naive_seconds, 3),
        "naive_images_per_second": round(naive_rate, 1),
        "naive_extrapolated_seconds": round(args.images / naive_rate, 1),
        "ratio": round(fast_rate / naive_rate, 1), "answers_agree": agree,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.images:,} images x {args.options} options x {args.prompts} prompts, dim {args.dim}")
    print(f"vectorised: {fast_seconds:8.3f} s  {fast_rate:12,.0f} images/s")
    print(f"naive loop: {naive_seconds:8.3f} s  {naive_rate:12,.1f} images/s  "
          f"(on {args.naive:,} images; {args.images / naive_rate:,.0f} s extrapolated)")
    print(f"ratio:      {fast_rate / naive_rate:,.0f}x   (answers agree on {agree:.1%} of the subset)")


if __name__ == "__main__":
    main()
