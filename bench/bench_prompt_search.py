#!/usr/bin/env python
"""Bench the prompt search: 500 candidates, a group of 10 options, 160 reviews (``learn --search-prompts``).

Times :func:`labeler.core.prompt_search.choose` (the cross-validation that decides, then the search
on every review) on synthetic unit vectors: one planted direction per "word", candidates in
template families sharing a form's direction, as text vectors do, images near their option's
words. The baseline, measured in the same run, scores each move of the search's first round from
scratch (ensemble vectors, cosines, cross-entropy) instead of incrementally, and is extrapolated
to the moves the real search evaluated. The target is 20 s on the 2-core machine.

    .venv/bin/python bench/bench_prompt_search.py [--candidates 500] [--options 10] [--reviews 160] [--dim 512] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from labeler.core import prompt_search  # noqa: E402
from labeler.core.scoring import unit  # noqa: E402

TARGET_SECONDS = 20.0
SCALE = 100.0


def synthetic(n_candidates: int, n_options: int, n_reviews: int, dim: int, seed: int = 0):
    """(reviews [K, D], labels [K], candidates [C, D], start ensembles, families)."""
    rng = np.random.default_rng(seed)
    words = unit(rng.normal(size=(2 * n_options, dim)))  # two words per option
    per_form = 2 * n_options
    n_forms = max(1, n_candidates // (2 * per_form))
    forms = unit(rng.normal(size=(n_forms, dim)))
    named = unit(2.0 * forms[:, None, :] + words[None, :, :]).reshape(-1, dim)  # [forms * words, D]
    noise = unit(rng.normal(size=(max(0, n_candidates - len(named) - n_options), dim)))
    vague = unit(rng.normal(size=(n_options, dim)))
    candidates = np.concatenate([named, noise, vague])[:n_candidates]
    labels = np.repeat(np.arange(n_options), n_reviews // n_options)
    shade = rng.integers(0, 2, len(labels))
    reviews = unit(words[2 * labels + shade] + 0.8 * unit(rng.normal(size=(len(labels), dim))))
    start = [[len(candidates) - n_options + o] for o in range(n_options)]
    families = [np.arange(f * per_form, (f + 1) * per_form) for f in range(n_forms)]
    return reviews, labels, candidates, start, families


def naive_round(X: np.ndarray, y: np.ndarray, C: np.ndarray, start: list[list[int]],
                sample: int = 400) -> tuple[float, int]:
    """Seconds and moves of one greedy round scored from scratch (every add and every reset of the
    shortlist), timed on ``sample`` moves and extrapolated."""
    moves = [(o, new) for o in range(len(start)) for p in range(min(len(C), prompt_search.SHORTLIST))
             for new in ([*start[o], p], [p])]
    t = time.perf_counter()
    for o, new in moves[::max(1, len(moves) // sample)]:
        members = [list(m) for m in start]
        members[o] = new
        prompt_search._fit(prompt_search._scores(X, C, members), y, SCALE)
    timed = len(moves[::max(1, len(moves) // sample)])
    return (time.perf_counter() - t) * len(moves) / timed, len(moves)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--options", type=int, default=10)
    parser.add_argument("--reviews", type=int, default=160)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    X, y, C, start, families = synthetic(args.candidates, args.options, args.reviews, args.dim)
    t = time.perf_counter()
    cpu = time.process_time()
    _, cv = prompt_search.choose(X, y, C, start, SCALE, families)
    seconds, cpu_seconds = time.perf_counter() - t, time.process_time() - cpu
    print(f"choose: {seconds:.2f} s wall, {cpu_seconds:.2f} s CPU", file=sys.stderr, flush=True)
    found = prompt_search.search(X, y, C, start, SCALE, families=families)
    rounds = sum(len(m) for m in found.members)  # a lower bound on the rounds of the winning run
    searches = 1 + prompt_search.fewshot.fold_count(y)  # one per fold, then one on every review
    # The naive baseline: one round from scratch (the same shortlist), times the rounds of every
    # greedy run of every search.
    naive_seconds, naive_moves = naive_round(X, y, C, start)
    extrapolated = naive_seconds * rounds * searches * (1 + len(families))
    report = {"candidates": len(C), "options": args.options, "reviews": len(y), "dim": args.dim,
              "families": len(families), "seconds": round(seconds, 2), "cpu_seconds": round(cpu_seconds, 2),
              "target_seconds": TARGET_SECONDS, "meets_target": seconds <= TARGET_SECONDS,
              "cv_accuracy": cv.accuracy, "adopted": bool(cv.better()),
              "naive_round_seconds": round(naive_seconds, 2), "naive_moves_per_round": naive_moves,
              "naive_extrapolated_seconds": round(extrapolated, 1),
              "ratio": round(extrapolated / max(seconds, 1e-9), 1)}
    if args.json:
        print(json.dumps(report))
        return
    print(f"prompt search: {len(C)} candidates ({len(families)} families), {args.options} options, "
          f"{len(y)} reviews, dim {args.dim}")
    print(f"  choose (5-fold cross-validation + search): {seconds:.2f} s wall, {cpu_seconds:.2f} s CPU "
          f"({'meets' if seconds <= TARGET_SECONDS else 'MISSES'} the {TARGET_SECONDS:.0f} s target)")
    print(f"  cross-validated accuracy {cv.accuracy['before']:.3f} -> {cv.accuracy['after']:.3f}, "
          f"{'adopted' if cv.better() else 'kept the start'}")
    print(f"  baseline, moves scored from scratch: {naive_seconds:.2f} s a round of {naive_moves} moves, "
          f"~{extrapolated:.0f} s extrapolated; ratio {extrapolated / max(seconds, 1e-9):.0f}x")


if __name__ == "__main__":
    main()
