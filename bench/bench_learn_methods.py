#!/usr/bin/env python
"""What each learned method adds to ``learn``'s cross-validated choice, in CPU seconds, in one run.

One group of ``bench_learn``'s synthetic collection (concept, 10 options, 16 reviews per option):
:func:`labeler.core.fewshot.learn_group` limited to each method alone (against zero-shot), then
with every method, which is what ``learn`` runs. The baseline is the choice before GDA and ProKeR
joined (cache and head), measured in the same run, so the ratio is what they cost.

    .venv/bin/python bench/bench_learn_methods.py [--dim 512] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bench_learn  # noqa: E402
from labeler.core import fewshot  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    vecs, truth, texts = bench_learn.synthetic(20_000, args.dim)
    y = truth[:, list(bench_learn.GROUPS).index("concept")]
    rng = np.random.default_rng(0)
    shown = np.concatenate([rng.permutation(np.flatnonzero(y == o))[:16] for o in range(10)])
    report = {}
    for name, methods in [("cache", ["cache"]), ("head", ["head"]), ("gda", ["gda"]), ("proker", ["proker"]),
                          ("before: cache + head", ["cache", "head"]), ("now: every method", None)]:
        cpu = time.process_time()
        fit = fewshot.learn_group(vecs[shown], y[shown], texts["concept"], bench_learn.SCALE, methods=methods)
        report[name] = {"cpu_seconds": round(time.process_time() - cpu, 3), "chose": fit.method}
    ratio = report["now: every method"]["cpu_seconds"] / max(report["before: cache + head"]["cpu_seconds"], 1e-9)
    if args.json:
        print(json.dumps({"dim": args.dim, "methods": report, "ratio_now_to_before": round(ratio, 2)}))
        return
    print(f"learn_group, concept (10 options, 160 reviews), dim {args.dim}: CPU seconds")
    for name, r in report.items():
        print(f"  {name:<22} {r['cpu_seconds']:>8.3f} s   chose {r['chose']}")
    print(f"  every method / cache + head: {ratio:.2f}x")


if __name__ == "__main__":
    main()
