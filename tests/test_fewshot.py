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
    assert fit.method in ("cache", "head", "gda", "proker")
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


# ----------------------------------------------------------------------------- GDA and ProKeR

def gaussian_log_density(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """log N(x; mean, cov) for rows ``[N, D]``, straight from the formula (no shortcut shared with fewshot)."""
    d = x - mean
    _, logdet = np.linalg.slogdet(cov)
    return -0.5 * (np.einsum("nd,de,ne->n", d, np.linalg.inv(cov), d) + logdet + len(mean) * np.log(2 * np.pi))


def test_gda_is_the_bayes_rule_of_gaussians_with_the_papers_shrunk_shared_covariance():
    # The ICLR 2024 estimator, written as in the paper's code: cov_inv = D * pinv((K-1) cov + tr(cov) I).
    rng = np.random.default_rng(11)
    dim, n_options = 6, 3
    vecs, labels, _ = clusters(rng, n_options, 5)
    vecs, labels = vecs[:, :dim], labels  # few dims, so the D x D route below is the plain one
    vecs = unit(vecs + 0.3 * rng.normal(size=vecs.shape))
    mus = np.stack([vecs[labels == o].mean(axis=0) for o in range(n_options)])
    centred = vecs - mus[labels]
    cov = np.cov(centred.T)
    precision = dim * np.linalg.pinv((len(vecs) - 1) * cov + np.trace(cov) * np.eye(dim))
    W, b = fewshot.gda_parameters(vecs, labels, n_options)
    np.testing.assert_allclose(W, mus @ precision, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(b, np.log(1 / 3) - 0.5 * np.einsum("od,de,oe->o", mus, precision, mus),
                               rtol=1e-4, atol=1e-4)
    # ... and its logits are the Gaussians' log posteriors: equal up to one constant per image.
    queries = unit(rng.normal(size=(7, dim)))
    density = np.stack([gaussian_log_density(queries, mus[o], np.linalg.inv(precision)) + np.log(1 / 3)
                        for o in range(n_options)], axis=1)
    diff = (queries @ W.T + b) - density
    np.testing.assert_allclose(diff - diff[:, :1], 0.0, atol=1e-3)


def test_gda_in_high_dimensions_matches_the_direct_inverse_and_leaves_unreviewed_options_neutral():
    rng = np.random.default_rng(12)
    vecs, labels, centres = clusters(rng, 4, 3)  # 12 reviews in 32 dimensions: the Woodbury route
    keep = labels != 3  # option 3 never reviewed
    W, b = fewshot.gda_parameters(vecs[keep], labels[keep], 4)
    X, y = vecs[keep], labels[keep]
    mus = np.stack([X[y == o].mean(axis=0) for o in range(3)])
    scatter = (X - mus[y]).T @ (X - mus[y])
    precision = DIM * np.linalg.inv(scatter + np.trace(scatter) / (len(X) - 1) * np.eye(DIM))
    np.testing.assert_allclose(W[:3], mus @ precision, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(W[3], W[:3].mean(axis=0), atol=1e-5)
    assert b[3] == pytest.approx(b[:3].mean(), abs=1e-5)
    # With alpha the GDA term sits beside zero-shot's: alpha 0 is zero-shot exactly.
    clf = fewshot.fit_gda(X, y, centres, 30.0, alpha=0.0)
    np.testing.assert_allclose(clf.logits(vecs), fewshot.zero_shot(centres, 30.0).logits(vecs), atol=1e-5)


def test_proker_is_the_kernel_ridge_regression_of_the_zero_shot_residuals():
    rng = np.random.default_rng(13)
    vecs, labels, centres = clusters(rng, 3, 4)
    text = unit(centres + rng.normal(size=centres.shape))
    queries = unit(rng.normal(size=(5, DIM)))
    beta, lam, scale = 3.0, 0.5, 20.0
    clf = fewshot.fit_proker(vecs, labels, text, scale, beta=beta, lam=lam)
    # Solved another way: least squares on the ridge objective ||lam R - K c||^2 + lam c'Kc, stacked
    # with the Cholesky factor of K, rather than the normal equations the library solves.
    residual = np.eye(3)[labels] - vecs @ text.T
    gram = np.exp(-beta * (1 - vecs @ vecs.T))
    chol = np.linalg.cholesky(gram)
    system = np.vstack([gram, np.sqrt(lam) * chol.T])
    coef = np.linalg.lstsq(system, np.vstack([lam * residual, np.zeros_like(residual)]), rcond=None)[0]
    expected = queries @ text.T + np.exp(-beta * (1 - queries @ vecs.T)) @ coef
    np.testing.assert_allclose(clf.logits(queries) / scale, expected, atol=1e-4)


def test_proker_spans_zero_shot_to_a_residual_cache_as_the_paper_says():
    # The paper's reading: lambda -> 0 keeps the zero-shot predictor; lambda -> infinity is a
    # Tip-Adapter-like cache of the residuals; in between it fits the reviews it was given.
    rng = np.random.default_rng(14)
    vecs, labels, centres = clusters(rng, 3, 6)
    text = unit(rng.normal(size=(3, DIM)))
    zero = fewshot.zero_shot(text, 10.0).logits(vecs)
    tiny = fewshot.fit_proker(vecs, labels, text, 10.0, beta=5.5, lam=1e-6).logits(vecs)
    np.testing.assert_allclose(tiny, zero, atol=1e-3)
    huge = fewshot.fit_proker(vecs, labels, text, 10.0, beta=5.5, lam=1e7).logits(vecs)
    residual = np.eye(3)[labels] - vecs @ text.T
    np.testing.assert_allclose(huge, zero + 10.0 * fewshot.kernel(vecs, vecs, 5.5) @ residual, atol=1e-2)
    fitted = fewshot.fit_proker(vecs, labels, text, 10.0, beta=5.5, lam=1.0).logits(vecs)
    assert (fitted.argmax(1) == labels).mean() == 1.0 > (zero.argmax(1) == labels).mean()


@pytest.mark.parametrize("method, params", [("gda", {"alpha": 1.0}), ("proker", {"beta": 3.0, "lam": 0.1})])
def test_gda_and_proker_are_stored_and_read_back_exactly(method, params):
    rng = np.random.default_rng(15)
    vecs, labels, centres = clusters(rng, 3, 10)
    clf = fewshot.build(method, params, vecs, labels, centres, 25.0)
    again = fewshot.Classifier.from_bytes(method, clf.to_bytes())
    np.testing.assert_allclose(again.logits(vecs), clf.logits(vecs), atol=1e-5)


def test_learn_group_can_be_limited_to_some_methods_and_the_guard_still_decides():
    rng = np.random.default_rng(16)
    vecs, labels, _ = clusters(rng, 3, 16)
    text = unit(rng.normal(size=(3, DIM)))
    for method in ("gda", "proker", "cache", "head"):
        fit = fewshot.learn_group(vecs, labels, text, 20.0, methods=[method])
        assert fit.method == method
    good = fewshot.learn_group(vecs[::8], labels[::8], unit(np.stack([vecs[labels == o].mean(0) for o in range(3)])),
                               20.0, methods=["gda", "proker"])
    assert good.method == "zero-shot"
    with pytest.raises(ValueError, match="unknown method"):
        fewshot.candidates(["lda"])
