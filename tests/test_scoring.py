"""The ensemble maths on small hand-made arrays; expected answers are computed independently."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labeler.core import scoring

# Two images, three prompts for option 0 and two for option 1, in 3 dimensions.
IMAGES = scoring.unit(np.array([[1.0, 0.0, 0.0], [0.0, 0.6, 0.8]]))
PROMPTS = scoring.unit(np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0],
                                 [0.0, 1.0, 0.0], [0.0, 1.0, 1.0]]))
OWNER = np.array([0, 0, 0, 1, 1])
WEIGHTS = np.array([1.0, 2.0, 1.0, 3.0, 1.0])
BASELINES = scoring.unit(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))


def loop_scores(strategy: str) -> np.ndarray:
    """The same scores with plain Python loops, one image and one prompt at a time."""
    out = np.zeros((len(IMAGES), 2))
    for n, image in enumerate(IMAGES):
        for o in range(2):
            rows = [p for p in range(len(OWNER)) if OWNER[p] == o]
            cos = [sum(a * b for a, b in zip(image, PROMPTS[p])) for p in rows]
            if strategy == "mean-score":
                out[n, o] = sum(cos) / len(cos)
            elif strategy == "max-score":
                out[n, o] = max(cos)
            elif strategy == "weighted":
                out[n, o] = sum(WEIGHTS[p] * c for p, c in zip(rows, cos)) / sum(WEIGHTS[p] for p in rows)
            elif strategy == "mean-embedding":
                mean = [sum(PROMPTS[p][d] for p in rows) / len(rows) for d in range(3)]
                norm = math.sqrt(sum(x * x for x in mean))
                out[n, o] = sum(a * b / norm for a, b in zip(image, mean))
            elif strategy == "single":
                out[n, o] = sum(a * b for a, b in zip(image, BASELINES[o]))
    return out


@pytest.mark.parametrize("strategy", scoring.STRATEGIES)
def test_each_strategy_matches_a_plain_loop(strategy):
    got = scoring.option_scores(strategy, IMAGES, PROMPTS, OWNER, WEIGHTS, BASELINES)
    assert got.shape == (2, 2)
    np.testing.assert_allclose(got, loop_scores(strategy), atol=1e-6)


def test_hand_computed_values():
    # Image 0 = e1. Option 0's prompts have cosines 1, 1/sqrt2, 0; option 1's 0, 0.
    s = 1 / math.sqrt(2)
    np.testing.assert_allclose(scoring.option_scores("mean-score", IMAGES, PROMPTS, OWNER, WEIGHTS, BASELINES)[0],
                               [(1 + s) / 3, 0.0], atol=1e-6)
    np.testing.assert_allclose(scoring.option_scores("weighted", IMAGES, PROMPTS, OWNER, WEIGHTS, BASELINES)[0],
                               [(1 + 2 * s) / 4, 0.0], atol=1e-6)
    np.testing.assert_allclose(scoring.option_scores("max-score", IMAGES, PROMPTS, OWNER, WEIGHTS, BASELINES)[0],
                               [1.0, 0.0], atol=1e-6)


def test_mean_embeddings_are_unit_and_ignore_prompt_length():
    vecs = np.array([[2.0, 0.0], [0.0, 5.0]])  # unnormalised: each prompt counts once anyway
    got = scoring.mean_embeddings(vecs, np.array([0, 0]), 1)
    np.testing.assert_allclose(got, [[1 / math.sqrt(2), 1 / math.sqrt(2)]], atol=1e-6)


def test_unknown_strategy_and_unordered_prompts_are_refused():
    with pytest.raises(ValueError, match="unknown strategy"):
        scoring.option_scores("median", IMAGES, PROMPTS, OWNER, WEIGHTS, BASELINES)
    with pytest.raises(ValueError, match="ordered by option"):
        scoring.max_per_option(np.zeros((1, 3)), np.array([1, 0, 1]), 2)


def test_softmax_confidence_uses_the_logit_scale():
    scores = np.array([[0.30, 0.20], [0.25, 0.25]])
    conf = scoring.softmax_confidence(scores, 100.0)
    expected = 1 / (1 + math.exp(-10))  # exp(30) / (exp(30) + exp(20))
    np.testing.assert_allclose(conf[0], [expected, 1 - expected], rtol=1e-9)
    np.testing.assert_allclose(conf[1], [0.5, 0.5])
    np.testing.assert_allclose(scoring.softmax_confidence(scores, 1.0)[0],
                               [math.exp(0.3) / (math.exp(0.3) + math.exp(0.2)),
                                math.exp(0.2) / (math.exp(0.3) + math.exp(0.2))], rtol=1e-9)


def test_decide_margin_and_thresholds():
    conf = np.array([[0.7, 0.2, 0.1], [0.1, 0.35, 0.55], [0.25, 0.45, 0.30]])
    plain = scoring.decide(conf)
    assert plain.best.tolist() == [0, 2, 1] and plain.choice.tolist() == [0, 2, 1]
    np.testing.assert_allclose(plain.confidence, [0.7, 0.55, 0.45])
    np.testing.assert_allclose(plain.margin, [0.5, 0.2, 0.15])
    group = scoring.decide(conf, none_threshold=0.5)
    assert group.choice.tolist() == [0, 2, scoring.NONE]
    per_option = scoring.decide(conf, np.array([np.nan, 0.3, 0.6]))
    assert per_option.choice.tolist() == [0, scoring.NONE, 1]
    one = scoring.decide(np.array([[1.0], [1.0]]))
    assert one.choice.tolist() == [0, 0] and one.margin.tolist() == [1.0, 1.0]


def test_expected_calibration_error_by_hand():
    # Bin (0.8, 0.9]: confidences 0.85, 0.85 with 1 of 2 right: |0.5 - 0.85| = 0.35, weight 2/4.
    # Bin (0.2, 0.3]: 0.25, 0.25 with 1 of 2 right: |0.5 - 0.25| = 0.25, weight 2/4.
    conf = np.array([0.85, 0.85, 0.25, 0.25])
    correct = np.array([True, False, True, False])
    assert scoring.expected_calibration_error(conf, correct) == pytest.approx(0.5 * 0.35 + 0.5 * 0.25)
    counts, accuracy, mean_conf = scoring.reliability_bins(conf, correct)
    assert counts.tolist() == [0, 0, 2, 0, 0, 0, 0, 0, 2, 0]
    assert accuracy[2] == 0.5 and mean_conf[8] == pytest.approx(0.85)
    assert scoring.expected_calibration_error(np.array([1.0, 1.0]), np.array([True, True])) == 0.0
