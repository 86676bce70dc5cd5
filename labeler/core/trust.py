"""Trusted labels: one-sided bounds and the choice of an auto-accept threshold. Pure numpy; no database.

``accept`` (:mod:`labeler.review.trust`) accepts every proposal of a group whose calibrated
confidence is at least a threshold, chosen so that a one-sided 95% lower bound of the accepted
set's precision is at least the target. The evidence is a *random* sample of reviewed labels, each
with its *out-of-fold* confidence (what the group's fit says about it without having seen it) and
whether the reviewer kept the fit's answer.

How the bound is made (:func:`precision_curve`): the chance that a proposal is right is modelled
as ``sigmoid(a + b * log_odds(confidence))`` (Platt scaling of the confidences; ``a = 0, b = 1``
means they are right as they stand). The reviews' likelihood gives every ``(a, b)`` they do not
rule out at 95% *together* (a likelihood-ratio region with two degrees of freedom); the bound is the
*worst* precision of the accepted set over that region. A pure count of reviews above a threshold needs about 300 error-free ones
to certify 0.99; the model lets the reviews below the threshold speak about the confidences
too, which needs far fewer, at the price of its assumption (checked on held-out worlds: README).
The region covers both parameters at once, so every threshold's bound holds together and
choosing the largest set that passes spends nothing. (A one-parameter cutoff, chi2(1), did not:
``accept`` picks the threshold after seeing every bound, and on reviews resampled from real
worlds its stated bound sat above the delivered precision in up to a quarter of the draws: README.) A threshold with fewer
than ``MIN_REVIEWS_ABOVE`` random reviews above it is never certified (no bound far past the data).
Testing fixed thresholds from the most confident down and stopping at the first failure ("Learn
then Test") would choose the same set: every slope in ``B_GRID`` is >= 0, so the bound only falls as
the threshold falls. With the one-parameter cutoff it is that round-2 rule again, whose
per-threshold test overstates at these sample sizes even when Platt's shape is right (README,
round 4).

Shapes: ``N`` proposals, ``K`` random reviews, ``T`` candidate thresholds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05  # one-sided: every bound here holds with 95% confidence
MAX_CANDIDATES = 400  # thresholds tried, at most: quantiles of the proposals' confidences


# ----------------------------------------------------------------------------- bounds

def _binomial_tail_at_least(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
             for i in range(k, n + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def _poisson_at_most(e: int, lam: float) -> float:
    """P(X <= e) for X ~ Poisson(lam)."""
    if lam <= 0.0:
        return 1.0
    terms = [-lam + i * math.log(lam) - math.lgamma(i + 1) for i in range(e + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def _bisect(f, lo: float, hi: float, iterations: int = 200) -> float:
    """The root of increasing ``f`` on ``[lo, hi]``."""
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if f(mid) < 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def clopper_pearson_lower(successes: int, n: int, alpha: float = ALPHA) -> float:
    """One-sided Clopper-Pearson lower bound of a binomial proportion (``beta.ppf(alpha, k, n-k+1)``)."""
    if n <= 0 or successes <= 0:
        return 0.0
    if successes >= n:
        return alpha ** (1.0 / n)
    return _bisect(lambda p: _binomial_tail_at_least(successes, n, p) - alpha, 0.0, 1.0)


def wilson_lower(successes: int, n: int, alpha: float = ALPHA) -> float:
    """One-sided Wilson score lower bound of a binomial proportion."""
    if n <= 0:
        return 0.0
    z = _normal_quantile(1 - alpha)
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


def _normal_quantile(q: float) -> float:
    return _bisect(lambda x: 0.5 * math.erfc(-x / math.sqrt(2)) - q, -40.0, 40.0)


def poisson_upper(errors: int, alpha: float = ALPHA) -> float:
    """One-sided upper bound of a Poisson mean after observing ``errors`` (``chi2.ppf(1-alpha, 2e+2) / 2``)."""
    if errors < 0:
        raise ValueError("errors must be >= 0")
    if errors == 0:
        return -math.log(alpha)
    return _bisect(lambda lam: alpha - _poisson_at_most(errors, lam), 0.0, 10.0 * errors + 50.0)


# ----------------------------------------------------------------------------- the calibration region

A_GRID = np.linspace(-6.0, 6.0, 121)  # Platt intercepts tried
B_GRID = np.linspace(0.0, 4.0, 81)  # Platt slopes tried (1 with intercept 0: the confidences are right)
# chi2(2).ppf(0.95): a 95% region for (a, b) together, so the bound holds at every threshold at
# once (the threshold is chosen after looking at them all)
REGION_CHI2 = 5.991464547107979
MIN_REVIEWS_ABOVE = 10  # a threshold needs this many random reviews at or above it: no bound far past the data
EPS = 1e-6


def log_odds(confidence: np.ndarray) -> np.ndarray:
    """``log(c / (1 - c))`` ``[N]`` of confidences ``[N]``, clipped away from 0 and 1."""
    c = np.clip(np.asarray(confidence, np.float64), EPS, 1.0 - EPS)
    return np.log(c) - np.log1p(-c)


def _log_sigmoid(z: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -z)


def platt_log_likelihood(review_confidence: np.ndarray, review_correct: np.ndarray) -> np.ndarray:
    """``[A, B]``: the reviews' log-likelihood under ``P(correct) = sigmoid(a + b * log_odds(conf))``
    for every ``a`` of :data:`A_GRID` and ``b`` of :data:`B_GRID`.

    ``review_correct`` ``[K]`` may be fractional (an expected outcome, for projections).
    """
    # Reviews of one log-odds share a term (many sit at the clip near 1): sum their outcomes first.
    x, where = np.unique(log_odds(review_confidence), return_inverse=True)  # [U]
    y = np.asarray(review_correct, np.float64).reshape(-1)
    right = np.bincount(where.reshape(-1), weights=y, minlength=len(x))  # [U]
    total = np.bincount(where.reshape(-1), minlength=len(x)).astype(np.float64)
    z = A_GRID[:, None, None] + B_GRID[None, :, None] * x[None, None, :]  # [A, B, U]
    # y log s(z) + (1 - y) log s(-z) = log s(z) - (1 - y) z, as log s(-z) = log s(z) - z
    return (total * _log_sigmoid(z) - (total - right) * z).sum(axis=2)


def plausible(log_likelihood: np.ndarray, weight: float = 1.0) -> np.ndarray:
    """``[P, 2]`` (a, b) pairs the reviews do not rule out: the likelihood-ratio region
    ``2 * weight * (max - loglik) <= chi2``. ``weight`` > 1 projects the region of more reviews."""
    drop = 2.0 * weight * (log_likelihood.max() - log_likelihood)
    ia, ib = np.nonzero(drop <= REGION_CHI2)
    return np.stack([A_GRID[ia], B_GRID[ib]], axis=1)


def lower_edge(region: np.ndarray) -> np.ndarray:
    """``[<=B, 2]``: of each slope's plausible pairs ``[P, 2]``, the one with the lowest intercept.

    Every proposal's chance of being right grows with ``a`` at a fixed ``b``, so the worst
    precision over the region is always on this edge: bounding over it is exact, and ~80 pairs
    instead of thousands make the curve (and the refusal's projection) many times cheaper."""
    if len(region) == 0:
        return region
    order = np.lexsort((region[:, 0], region[:, 1]))  # by slope, then intercept
    first = np.concatenate([[True], np.diff(region[order, 1]) != 0])
    return region[order][first]


@dataclass(frozen=True)
class Curve:
    """Per candidate threshold ``[T]`` (most confident first): how many proposals it accepts, the
    precision at the reviews' best calibration, and the worst precision any plausible one gives."""

    thresholds: np.ndarray  # [T]
    accepted: np.ndarray  # [T] int
    estimated: np.ndarray  # [T]
    lower: np.ndarray  # [T]
    reviews_above: np.ndarray  # [T] int: random reviews at or above the threshold

    def to_dict(self) -> dict:
        return {"thresholds": self.thresholds.round(6).tolist(), "accepted": self.accepted.tolist(),
                "estimated_precision": self.estimated.round(6).tolist(), "lower_bound": self.lower.round(6).tolist()}


BINS = 512


def precision_curve(confidence: np.ndarray, review_confidence: np.ndarray, review_correct: np.ndarray,
                    weight: float = 1.0, bins: int = BINS) -> Curve:
    """The accepted set's precision, estimated and bounded, for every candidate threshold.

    ``confidence`` ``[N]``: the proposals that may be accepted; ``review_confidence`` ``[K]`` the
    out-of-fold confidence of each random review's proposal, ``review_correct`` ``[K]`` whether the
    reviewer kept it. The proposals are binned ``[bins]`` by confidence; each bin counts at its
    lowest confidence, so the bound only errs low. The region is simultaneous over (a, b), so every
    threshold's bound holds at once and choosing among them spends nothing.
    """
    confidence = np.asarray(confidence, np.float64)
    review_confidence = np.asarray(review_confidence, np.float64)
    edges = np.unique(np.quantile(confidence, np.linspace(0.0, 1.0, bins + 1)))[::-1] if len(confidence) else np.zeros(0)
    ordered = np.sort(confidence)
    counts = (len(ordered) - np.searchsorted(ordered, edges, side="left")).astype(np.int64)  # >= edge, from the top
    if len(edges) == 0:
        empty = np.zeros(0)
        return Curve(empty, empty.astype(np.int64), empty, empty, empty.astype(np.int64))
    per_bin = np.diff(np.concatenate([[0], counts]))  # proposals whose confidence falls in [edge_i, edge_{i-1})
    loglik = platt_log_likelihood(review_confidence, review_correct)
    ia, ib = np.unravel_index(np.argmax(loglik), loglik.shape)
    region = lower_edge(plausible(loglik, weight))
    x = log_odds(edges)  # [T]

    def precision(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # [P] pairs -> [P, T]
        p_right = 1.0 / (1.0 + np.exp(-(a[:, None] + b[:, None] * x[None, :])))
        return np.cumsum(p_right * per_bin[None, :], axis=1) / np.maximum(counts[None, :], 1)

    estimated = precision(np.array([A_GRID[ia]]), np.array([B_GRID[ib]]))[0]
    lower = precision(region[:, 0], region[:, 1]).min(axis=0) if len(region) else np.zeros(len(edges))
    above = (len(review_confidence) - np.searchsorted(np.sort(review_confidence), edges, side="left")).astype(np.int64)
    lower = np.where(above * weight >= MIN_REVIEWS_ABOVE, lower, 0.0)
    return Curve(edges, counts, estimated, lower, above)


@dataclass(frozen=True)
class Choice:
    """The lowest threshold whose lower bound reaches the target (``index`` None: there is none)."""

    curve: Curve
    index: int | None

    @property
    def found(self) -> bool:
        return self.index is not None


def choose_threshold(confidence: np.ndarray, review_confidence: np.ndarray, review_correct: np.ndarray,
                     target: float) -> Choice:
    """The threshold accepting the most proposals ``[N]`` whose lower bound is at least ``target``."""
    curve = precision_curve(confidence, review_confidence, review_correct)
    ok = np.flatnonzero(curve.lower >= target)
    return Choice(curve, int(ok[np.argmax(curve.accepted[ok])]) if len(ok) else None)


MIN_COVERAGE = 0.05  # a projection looks for a threshold that accepts at least this share
PROJECT_REVIEWS = 200  # without enough reviews, a projection assumes this many calibrated ones
# A projection assumes the new reviews err exactly as the old ones did; twice as many leaves
# room for a sample that errs a little more (with the bare count, about half of samples certify).
NEED_MARGIN = 2.0


def reviews_needed(confidence: np.ndarray, review_confidence: np.ndarray, review_correct: np.ndarray,
                   target: float, most: int = 20_000) -> int | None:
    """About how many random reviews *in all* would certify ``target`` on ``MIN_COVERAGE`` or more of
    the proposals ``[N]``, if further reviews look like these (with fewer than ``MIN_REVIEWS_ABOVE``,
    like a sample of the proposals whose confidences are right), times ``NEED_MARGIN``. None: not
    even ``most`` would.
    """
    confidence = np.asarray(confidence, np.float64)
    k = len(review_confidence)
    if k < 2 * MIN_REVIEWS_ABOVE:
        sample = np.random.default_rng(0).choice(confidence, min(PROJECT_REVIEWS, len(confidence)), replace=False)
        review_confidence, review_correct, k = sample, sample, len(sample)

    def enough(total: int) -> bool:
        curve = precision_curve(confidence, review_confidence, review_correct, weight=total / k)
        return bool(np.any((curve.lower >= target) & (curve.accepted >= MIN_COVERAGE * len(confidence))))

    if len(confidence) == 0 or not enough(most):
        return None
    lo, hi = 1, most
    while lo < hi:
        mid = (lo + hi) // 2
        if enough(mid):
            hi = mid
        else:
            lo = mid + 1
    return int(math.ceil(NEED_MARGIN * lo))
