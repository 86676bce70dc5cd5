#!/usr/bin/env python
"""The most palette accuracy 4 random reviews per option can carry when the model does not know
which colours are warm: issue 25's 95% target against what the reviews can show.

In the demo world, palette is derived from colour (``labeler.demo_world.PALETTES``): red, orange
and yellow are warm; blue, green and purple cool; black and white neutral; each of the 8 colours
is drawn with equal chance. The best the prompt search can do from reviews is to map every colour
a review shows onto that review's palette: measured, 97.5% of the images are then right when all
8 colours are placed right (``--placed``; the dev world of seed 4242, see the README). A colour no
review shows has to be placed without evidence. labeler-tiny does not know that orange is warm,
neither from its pictures nor from its words (README: "Palette from four reviews per option"), so
its place is right with chance ``--right`` (1/3 for a guess among three options; 0.5 is generous).

Draws ``--draws`` sets of 4 reviews per palette option, counts the colours each leaves unseen,
and prints the expected accuracy and how often the mean of three seeds, the target's measure,
reaches 95%. No model, no catalog: a count over the world's own definition.

    python bench/bench_palette_ceiling.py [--per-option 4] [--draws 200000] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labeler.demo_world import COLORS, PALETTES  # noqa: E402

TARGET = 0.95


def ceiling(per_option: int, draws: int, placed: float, right: float, seed: int = 0) -> dict:
    """Expected palette accuracy over ``draws`` random review sets, and how often three reach the target."""
    rng = np.random.default_rng(seed)
    options: dict[str, list[str]] = {}
    for colour in COLORS:
        options.setdefault(PALETTES[colour], []).append(colour)
    share = 1 / len(COLORS)  # of the images, per colour
    accuracy = np.full(draws, placed)
    unseen_total = np.zeros(draws)
    for colours in options.values():
        shown = rng.integers(len(colours), size=(draws, per_option))  # each review's colour
        for c in range(len(colours)):
            unseen = ~(shown == c).any(axis=1)
            misplaced = unseen & (rng.random(draws) >= right)
            accuracy -= misplaced * share
            unseen_total += unseen
    triples = accuracy[: draws // 3 * 3].reshape(-1, 3).mean(axis=1)
    return {"per_option": per_option, "draws": draws, "placed_accuracy": placed, "unseen_right": right,
            "expected_unseen_colours": round(float(unseen_total.mean()), 3),
            "all_colours_seen": round(float((unseen_total == 0).mean()), 3),
            "expected_accuracy": round(float(accuracy.mean()), 4),
            "three_seed_mean_reaches_target": round(float((triples >= TARGET).mean()), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-option", type=int, default=4)
    parser.add_argument("--draws", type=int, default=200_000)
    parser.add_argument("--placed", type=float, default=0.975, help="accuracy with every colour placed right")
    parser.add_argument("--right", type=float, nargs="+", default=[1 / 3, 0.5],
                        help="chance that a colour no review shows lands on its palette")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [ceiling(args.per_option, args.draws, args.placed, right) for right in args.right]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"palette from {args.per_option} random reviews per option, {args.draws:,} draws; "
          f"{args.placed:.1%} with every colour placed right")
    for r in results:
        print(f"unseen colour right with chance {r['unseen_right']:.2f}: {r['expected_unseen_colours']} colours "
              f"unseen on average (all seen in {r['all_colours_seen']:.1%} of draws), expected accuracy "
              f"{r['expected_accuracy']:.1%}, three seeds' mean >= {TARGET:.0%} in "
              f"{r['three_seed_mean_reaches_target']:.1%} of triples")


if __name__ == "__main__":
    main()
