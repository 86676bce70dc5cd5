"""The few-shot maths on arrays: what each classifier learns, the cross-validation guard, calibration, order."""

from __future__ import annotations

import numpy as np
import pytest

from labeler.core import fewshot, replay
from labeler.core.scoring import unit

DIM = 32


def clusters(rng: np.random.Generator, n_options: int, per_option: int, spread: float = 0.6):
    """Unit vectors around one random centre per option: (vectors [N, D], labels [N], centres [O, D])."""
    centres = unit(rng.normal(size=(n_options, DIM)))
    labels = np.repeat(np.arange(n_options), per_option)
    vecs = unit(centres[labels] + spread * rng.normal(size=(len(labels), DIM)) / np.sqrt(DIM))
    return vecs, labels, centres


def test_reviews_teach_a_group_the_prompts_cannot_describe():
    rng = np.random.default_rng(1)
    vecs, labels, _ = clusters(rng, 3, 200)
    text = unit(rng.normal(size=(3, DIM)))  # prompts that say nothing about the clusters
    shown = np.concatenate([np.flatnonzero(labels == o)[:16] for o in range(3)])
    rest = np.setdiff1d(np.arange(len(labels)), shown)
    fit = fewshot.learn_group(vecs[shown], labels[shown], text, scale=20.0)
    zero_shot = (fewshot.zero_shot(text, 20.0).logits(vecs[rest]).argmax(1) == labels[rest]).mean()
    learned = (fit.classifier.confidence(vecs[rest]).argmax(1) == labels[rest]).mean()
    assert fit.method in ("cache", "head")
    assert fit.cv_accuracy["learned"] > fit.cv_accuracy["zero_shot"]
    assert learned > 0.9 > zero_shot + 0.3


def test_good_prompts_are_kept_when_reviews_add_nothing():
    rng = np.random.default_rng(2)
    vecs, labels, centres = clusters(rng, 4, 100, spread=1.5)
    shown = np.concatenate([np.flatnonzero(labels == o)[:3] for o in range(4)])
    fit = fewshot.learn_group(vecs[shown], labels[shown], centres, scale=30.0)
    assert fit.method == "zero-shot"
    assert "kept zero-shot" in fit.note


@pytest.mark.parametrize("labels, why", [([0, 1], "only 2 reviews"), ([1, 1, 1, 1, 1], "single option")])
def test_too_few_reviews_keep_zero_shot_and_say_so(labels, why):
    rng = np.random.default_rng(3)
    vecs, _, centres = clusters(rng, 2, len(labels))
    fit = fewshot.learn_group(vecs[:len(labels)], np.array(labels), centres, scale=30.0)
    assert fit.method == "zero-shot" and fit.temperature == 1.0
    assert why in fit.note


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(4)
    logits = rng.normal(scale=4.0, size=(4000, 5))
    p = fewshot.softmax(logits / 2.5)
    labels = np.array([rng.choice(5, p=row) for row in p])
    assert fewshot.fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.1)
    assert fewshot.ece(logits, labels, 2.5) < fewshot.ece(logits, labels, 1.0)


def test_a_stored_classifier_gives_the_same_answers():
    rng = np.random.default_rng(5)
    vecs, labels, centres = clusters(rng, 3, 20)
    clf = fewshot.fit_cache(vecs, labels, centres, 25.0, alpha=1.0, beta=5.5)
    again = fewshot.Classifier.from_bytes("cache", clf.to_bytes())
    np.testing.assert_allclose(again.confidence(vecs), clf.confidence(vecs), atol=1e-6)


def test_the_head_stays_near_the_prompts_under_a_strong_pull():
    rng = np.random.default_rng(6)
    vecs, labels, centres = clusters(rng, 3, 20)
    text = unit(rng.normal(size=(3, DIM)))
    near = fewshot.fit_head(vecs, labels, text, 20.0, pull=100.0)
    free = fewshot.fit_head(vecs, labels, text, 20.0, pull=0.0)
    assert np.abs(near.weights - text).max() < np.abs(free.weights - text).max()


def test_balanced_order_takes_turns_over_proposed_values():
    proposed = np.array([0, 0, 0, 0, 1, 2])
    margin = np.array([0.01, 0.02, 0.03, 0.04, 0.5, 0.9])
    order = fewshot.balanced_order(proposed, margin)
    assert order.tolist() == [0, 4, 5, 1, 2, 3]  # a rare value's proposal comes before a common one's second


def test_typical_representatives_cover_every_cluster():
    rng = np.random.default_rng(7)
    vecs, labels, _ = clusters(rng, 5, 60, spread=0.3)
    reps = fewshot.typical_representatives(vecs, 5, seed=0)
    assert sorted(labels[reps].tolist()) == [0, 1, 2, 3, 4]


def test_replay_reports_every_shot_count_and_never_reveals_more_than_asked():
    rng = np.random.default_rng(8)
    vecs, labels, _ = clusters(rng, 3, 80)
    text = unit(rng.normal(size=(3, DIM)))
    for order in replay.ORDERS:
        result = replay.replay_group(vecs, labels, text, 20.0, [1, 4, 16], order=order, seed=3)
        assert list(result["shots"]) == [1, 4, 16]
        assert [r.reviews for r in result["shots"].values()] == [3, 12, 48]
        assert result["shots"][16].accuracy > result["zero_shot"] + 0.3
