"""The tokenizer on hostile text: labeler's BPE against open_clip's, on the same words, same run.

open_clip's ``SimpleTokenizer.bpe`` rescans the whole word for every merge (quadratic in its
length); labeler's merges through a heap (n log n). Both give the same pieces (checked here).
Prints seconds per word for each length and the ratio.

    .venv/bin/python bench/bench_tokenizer.py [--lengths 1000,4000,16000]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import open_clip  # noqa: E402

from labeler.encoding.tokenizer import ClipTokenizer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="1000,4000,16000")
    args = parser.parse_args()
    ours, theirs = ClipTokenizer(), open_clip.tokenizer.SimpleTokenizer()
    rng = random.Random(0)
    print(f"{'chars':>7} {'open_clip s':>12} {'labeler s':>10} {'ratio':>8}")
    for length in map(int, args.lengths.split(",")):
        word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(length))
        token = "".join(ours.byte_encoder[b] for b in word.encode())
        started = time.perf_counter()
        expected = theirs.bpe(token)
        baseline = time.perf_counter() - started
        started = time.perf_counter()
        got = ours._bpe(token)  # uncached
        ours_s = time.perf_counter() - started
        assert got == expected, length
        print(f"{length:>7} {baseline:>12.3f} {ours_s:>10.4f} {baseline / ours_s:>7.0f}x")


if __name__ == "__main__":
    main()
