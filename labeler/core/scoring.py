"""Ensemble scoring: small pure functions over numpy arrays. No model, no database.

Shapes: ``N`` images, ``D`` vector dimensions, ``P`` prompts of one group, ``O`` options.
Prompts of one group are stored option by option; ``owner[p]`` is the option of prompt ``p``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STRATEGIES: tuple[str, ...] = ("single", "mean-embedding", "mean-score", "max-score", "weighted")
NONE = -1  # the option index of "none of these"
# Decimals of a confidence as people see it (review cards): a change below them is no change to review.
SHOWN_DIGITS = 2


def unit(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` ``[..., D]`` scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def prompt_cosines(image_vecs: np.ndarray, prompt_vecs: np.ndarray) -> np.ndarray:
    """Cosine of every image with every prompt: ``[N, D] x [P, D] → [N, P]`` (inputs are unit vectors)."""
    return np.asarray(image_vecs, np.float32) @ np.asarray(prompt_vecs, np.float32).T


def mean_embeddings(prompt_vecs: np.ndarray, owner: np.ndarray, n_options: int,
                    weights: np.ndarray | None = None) -> np.ndarray:
    """One vector per option, the option's ensemble vector (the CLIP paper): the (weighted) sum
    of its unit prompt vectors, renormalised. The one place an ensemble vector is computed.

    ``prompt_vecs`` ``[P, D]``, ``owner`` ``[P]``, ``weights`` ``[P]`` (None: each prompt counts
    once, as the ``mean-embedding`` strategy does) → ``[O, D]``.
    """
    vecs = unit(prompt_vecs)
    if weights is not None:
        vecs = vecs * np.asarray(weights, np.float32)[:, None]
    sums = np.zeros((n_options, vecs.shape[1]), np.float32)
    np.add.at(sums, np.asarray(owner), vecs)
    return unit(sums)


def pooling_matrix(owner: np.ndarray, n_options: int, weights: np.ndarray | None = None) -> np.ndarray:
    """``[P, O]`` matrix whose column ``o`` averages option ``o``'s prompts (weighted when given).

    ``cosines [N, P] @ pooling_matrix`` is the per-option (weighted) mean score, one matrix product.
    """
    owner = np.asarray(owner)
    w = np.ones(len(owner), np.float32) if weights is None else np.asarray(weights, np.float32)
    matrix = np.zeros((len(owner), n_options), np.float32)
    matrix[np.arange(len(owner)), owner] = w
    return matrix / np.maximum(matrix.sum(axis=0, keepdims=True), 1e-12)


def max_per_option(cosines: np.ndarray, owner: np.ndarray, n_options: int) -> np.ndarray:
    """Per-option maximum over its prompts' cosines: ``[N, P] → [N, O]``.

    Prompts must be stored option by option (``owner`` non-decreasing), as :func:`group_arrays` does.
    """
    owner = np.asarray(owner)
    if len(owner) and np.any(np.diff(owner) < 0):
        raise ValueError("prompts must be ordered by option")
    starts = np.searchsorted(owner, np.arange(n_options))
    return np.maximum.reduceat(cosines, starts, axis=1)


def option_scores(strategy: str, image_vecs: np.ndarray, prompt_vecs: np.ndarray, owner: np.ndarray,
                  weights: np.ndarray, baseline_vecs: np.ndarray) -> np.ndarray:
    """Raw per-option cosine scores ``[N, O]`` of one group under ``strategy``.

    ``image_vecs`` ``[N, D]``; ``prompt_vecs`` ``[P, D]`` with ``owner`` and ``weights`` ``[P]``;
    ``baseline_vecs`` ``[O, D]``: each option's one plain prompt, for ``single``.
    """
    n_options = len(baseline_vecs)
    if strategy == "single":
        return prompt_cosines(image_vecs, baseline_vecs)
    if strategy == "mean-embedding":
        return prompt_cosines(image_vecs, mean_embeddings(prompt_vecs, owner, n_options))
    cosines = prompt_cosines(image_vecs, prompt_vecs)
    if strategy == "mean-score":
        return cosines @ pooling_matrix(owner, n_options)
    if strategy == "weighted":
        return cosines @ pooling_matrix(owner, n_options, weights)
    if strategy == "max-score":
        return max_per_option(cosines, owner, n_options)
    raise ValueError(f"unknown strategy '{strategy}' (known: {', '.join(STRATEGIES)})")


def softmax_confidence(scores: np.ndarray, logit_scale: float) -> np.ndarray:
    """Softmax over options of ``logit_scale * cosine``: ``[N, O] → [N, O]``, rows sum to 1.

    This is CLIP's zero-shot probability, the number the study reports (0.005 → 0.982).
    """
    logits = np.asarray(scores, np.float64) * float(logit_scale)
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Decision:
    """Per image: the chosen option (``NONE`` for none of these), its confidence, and the margin."""

    best: np.ndarray  # [N] int, the top option before thresholds
    choice: np.ndarray  # [N] int, the answer after thresholds; NONE = none of these
    confidence: np.ndarray  # [N] confidence of the top option
    margin: np.ndarray  # [N] top minus second confidence (the top's when there is one option)


def decide(confidence: np.ndarray, option_thresholds: np.ndarray | None = None,
           none_threshold: float | None = None) -> Decision:
    """Pick each image's answer from ``confidence`` ``[N, O]``.

    ``option_thresholds`` ``[O]`` (NaN where absent): when the top option's confidence is below its
    own threshold, or below ``none_threshold``, the answer is ``NONE``.
    """
    confidence = np.asarray(confidence)
    n, n_options = confidence.shape
    if n_options >= 2:
        top2 = np.argpartition(-confidence, 1, axis=1)[:, :2]
        first = np.take_along_axis(confidence, top2, axis=1)
        swap = first[:, 1] > first[:, 0]
        best = np.where(swap, top2[:, 1], top2[:, 0])
        top = np.maximum(first[:, 0], first[:, 1])
        margin = top - np.minimum(first[:, 0], first[:, 1])
    else:
        best = np.zeros(n, np.int64)
        top = confidence[:, 0] if n_options else np.zeros(n)
        margin = top.copy()
    choice = best.astype(np.int64).copy()
    below = np.zeros(n, bool)
    if none_threshold is not None:
        below |= top < none_threshold
    if option_thresholds is not None and n:
        limits = np.asarray(option_thresholds, np.float64)[best]
        below |= ~np.isnan(limits) & (top < np.nan_to_num(limits, nan=0.0))
    choice[below] = NONE
    return Decision(best=best.astype(np.int64), choice=choice, confidence=top, margin=margin)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """ECE: the sample-weighted mean gap between accuracy and confidence over equal-width bins.

    ``confidence`` ``[N]`` of each predicted answer, ``correct`` ``[N]`` bool.
    """
    confidence = np.asarray(confidence, np.float64)
    correct = np.asarray(correct, bool)
    if len(confidence) == 0:
        return 0.0
    counts, accuracy, mean_conf = reliability_bins(confidence, correct, bins)
    filled = counts > 0
    gaps = np.abs(accuracy[filled] - mean_conf[filled])
    return float((counts[filled] * gaps).sum() / len(confidence))


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = 10
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width confidence bin: (counts ``[B]``, accuracy ``[B]``, mean confidence ``[B]``).

    Bin ``b`` holds confidences in ``(b/B, (b+1)/B]``; a confidence of 0 goes in the first bin.
    """
    confidence = np.asarray(confidence, np.float64)
    correct = np.asarray(correct, np.float64)
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins).astype(np.float64)
    hits = np.bincount(index, weights=correct, minlength=bins)
    conf = np.bincount(index, weights=confidence, minlength=bins)
    safe = np.maximum(counts, 1)
    return counts.astype(int), hits / safe, conf / safe
