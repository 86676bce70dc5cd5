"""Cohen's kappa and raw agreement: textbook values, the edge cases, and symmetry."""

from __future__ import annotations

import random

import pytest

from labeler.core.agreement import cohens_kappa, kappa_interval, raw_agreement, wilson_interval


def test_the_textbook_example():
    # Cohen (1960) style 2x2: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> p_o 0.7, p_e 0.5, kappa 0.4
    pairs = [("y", "y")] * 20 + [("y", "n")] * 5 + [("n", "y")] * 10 + [("n", "n")] * 15
    assert raw_agreement(pairs) == pytest.approx(0.7)
    assert cohens_kappa(pairs) == pytest.approx(0.4)


def test_three_labels_and_none_of_these():
    pairs = [("saw", "saw"), ("saw", "saw"), ("mug", "mug"), (None, None), ("mug", "saw"), (None, "mug")]
    observed = 4 / 6
    expected = (2 * 3 + 2 * 2 + 2 * 1) / 36  # saw 2x3, mug 2x2, None 2x1
    assert cohens_kappa(pairs) == pytest.approx((observed - expected) / (1 - expected))


def test_perfect_chance_and_worse_than_chance():
    assert cohens_kappa([("a", "a"), ("b", "b")]) == pytest.approx(1.0)
    assert cohens_kappa([("a", "b"), ("b", "a")]) == pytest.approx(-1.0)
    assert cohens_kappa([("a", "a")] * 5) == 1.0  # one label throughout: agreement, p_e = 1
    assert cohens_kappa([("a", "b")] * 5) == 0.0
    assert cohens_kappa([]) is None and raw_agreement([]) is None


def test_kappa_is_symmetric_and_bounded():
    rng = random.Random(3)
    for _ in range(50):
        pairs = [(rng.choice("abc"), rng.choice("abcd")) for _ in range(rng.randint(1, 40))]
        k = cohens_kappa(pairs)
        assert k == pytest.approx(cohens_kappa([(b, a) for a, b in pairs]))
        assert -1.0 - 1e-9 <= k <= 1.0 + 1e-9


def test_a_rater_wrong_a_fifth_of_the_time_scores_lower():
    rng = random.Random(11)
    truth = [rng.choice(["hammer", "saw", "mug", "book", None]) for _ in range(2000)]
    sloppy = [t if rng.random() >= 0.2 else rng.choice([o for o in ["hammer", "saw", "mug", "book", None] if o != t])
              for t in truth]
    assert cohens_kappa(list(zip(truth, truth))) == pytest.approx(1.0)
    assert cohens_kappa(list(zip(sloppy, truth))) == pytest.approx(0.75, abs=0.04)


def test_strata_reckon_chance_within_each_group():
    # two groups whose values never meet: pooled chance is diluted, chance within each group is not
    pairs = [("red", "red"), ("blue", "blue"), ("red", "blue"), ("small", "small"), ("large", "large"),
             ("small", "large")]
    strata = ["color"] * 3 + ["size"] * 3
    within = (1 / 3 * 2 / 3 + 2 / 3 * 1 / 3 + 0) / 1  # each group: raters' frequencies (2/3, 1/3) vs (1/3, 2/3)
    expected = 0.5 * within + 0.5 * within
    assert cohens_kappa(pairs, strata) == pytest.approx((4 / 6 - expected) / (1 - expected))
    assert cohens_kappa(pairs, strata) < cohens_kappa(pairs)  # more chance agreement to discount
    assert cohens_kappa(pairs, ["one"] * 6) == pytest.approx(cohens_kappa(pairs))
    with pytest.raises(ValueError):
        cohens_kappa(pairs, strata[:2])


def test_wilson_interval_textbook_values_and_edges():
    # Wilson (1927) / Newcombe (1998): 81 of 263 -> 0.2553 to 0.3662 at 95%
    low, high = wilson_interval(81, 263)
    assert (low, high) == (pytest.approx(0.2553, abs=1e-4), pytest.approx(0.3662, abs=1e-4))
    assert wilson_interval(0, 10)[0] == 0.0 and 0.0 < wilson_interval(0, 10)[1] < 0.35
    assert wilson_interval(10, 10)[1] == 1.0 and 0.65 < wilson_interval(10, 10)[0] < 1.0


def test_kappa_interval_holds_the_kappa_narrows_with_more_pairs_and_covers_the_truth():
    rng = random.Random(23)
    values = ["hammer", "saw", "mug", "book", None]

    def sloppy_pairs(n):
        truth = [rng.choice(values) for _ in range(n)]
        return [(t if rng.random() >= 0.2 else rng.choice([v for v in values if v != t]), t) for t in truth]

    widths = {}
    for n in (25, 100, 400):
        pairs = sloppy_pairs(n)
        low, high = kappa_interval(pairs)
        assert low <= cohens_kappa(pairs) <= high
        widths[n] = high - low
    assert widths[25] > widths[100] > widths[400]
    # a fifth wrong among five even values: kappa 0.75; the 95% interval holds it in most samples of 100
    covered = sum(low <= 0.75 <= high for low, high in (kappa_interval(sloppy_pairs(100)) for _ in range(300)))
    assert covered >= 0.88 * 300
    assert kappa_interval([]) is None and kappa_interval([("a", "a")] * 5) is None  # kappa undefined
    assert kappa_interval([("a", "a"), ("b", "b")] * 30)[1] == pytest.approx(1.0)
