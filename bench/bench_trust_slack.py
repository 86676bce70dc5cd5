#!/usr/bin/env python
"""Where does the trusted-labels bound leave coverage? Each of its choices priced on real evidence.

Takes homes that ``bench/bench_trust.py --work DIR`` left and, on a copy of each (auto labels
returned to proposed), gathers each group's proposals and the random reviews ``accept`` used. Then,
only here, truth.csv scores the threshold each variant of the bound would choose at
``--min-precision``: its coverage and the true precision delivered, and the stated bound.

* ``now``: what ``accept`` does (each proposal at the low edge of its confidence bin, the worst case
  over the 95% region for both Platt parameters, chi2(2) = 5.99);
* ``exact``: the same with every proposal at its own confidence (the bins' price);
* ``1-D``: the worst case over the one-quantity region, chi2(1).ppf(0.90) = 2.71 (the 2-D region's
  price; that rule alone overstates: ``bench_trust_resample.py``);
* ``estimate``: the best-fitting calibration, no bound at all;
* ``oracle``: one threshold on the same confidences at true precision >= the target.

    PYTHONPATH=. .venv/bin/python bench/bench_trust_slack.py /tmp/bench-trust-XXXX [...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_trust import oracle_coverage  # noqa: E402
from bench_trust_resample import PROFILE_1D, evidence, with_cutoff  # noqa: E402
from labeler.core import trust as stats  # noqa: E402


def scored(group, curve: stats.Curve, index: int | None, stated: np.ndarray) -> dict:
    if index is None:
        return {"coverage": 0.0, "delivered": None, "stated": None}
    accepted = group.confidence >= curve.thresholds[index]
    return {"coverage": round(float(accepted.sum() / group.unreviewed), 3),
            "delivered": round(float(group.right[accepted].mean()), 4), "stated": round(float(stated[index]), 4)}


def lowest(curve: stats.Curve, values: np.ndarray, target: float) -> int | None:
    ok = np.flatnonzero(values >= target)
    return int(ok[np.argmax(curve.accepted[ok])]) if len(ok) else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work", type=Path, nargs="+", help="bench_trust.py --work folders")
    ap.add_argument("--min-precision", type=float, default=0.99)
    args = ap.parse_args()
    target = args.min_precision
    for work in args.work:
        for name, g in evidence(work).items():
            inputs = (g.confidence, g.review_confidence, g.review_correct)
            now = stats.precision_curve(*inputs)
            exact = stats.precision_curve(*inputs, bins=len(g.confidence))
            one = with_cutoff(PROFILE_1D, stats.precision_curve, *inputs)
            row = {"work": work.name, "group": name, "random_reviews": len(g.review_confidence),
                   "wrong": int((~g.review_correct).sum()),
                   "now": scored(g, now, lowest(now, now.lower, target), now.lower),
                   "exact": scored(g, exact, lowest(exact, exact.lower, target), exact.lower),
                   "1-D": scored(g, one, lowest(one, one.lower, target), one.lower),
                   "estimate": scored(g, now, lowest(now, now.estimated, target), now.estimated),
                   "oracle": round(oracle_coverage(g.confidence, g.right, target) * len(g.confidence)
                                   / g.unreviewed, 3)}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
