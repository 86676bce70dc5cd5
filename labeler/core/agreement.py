"""Agreement between two raters on the same items: raw agreement and Cohen's kappa.

Pure functions over pairs of labels (any hashable values, None for "none of these"). No model, no
database.
"""

from __future__ import annotations

from collections import Counter
from typing import Hashable, Sequence


def raw_agreement(pairs: Sequence[tuple[Hashable, Hashable]]) -> float | None:
    """The share of ``pairs`` ``[(a, b), ...]`` where both raters gave the same label; None for none."""
    if not pairs:
        return None
    return sum(1 for a, b in pairs if a == b) / len(pairs)


def _chance(pairs: Sequence[tuple[Hashable, Hashable]]) -> float:
    """Agreement expected by chance from each rater's own label frequencies over ``pairs``."""
    n = len(pairs)
    first = Counter(a for a, _ in pairs)
    second = Counter(b for _, b in pairs)
    return sum(first[label] * second.get(label, 0) for label in first) / (n * n)


def cohens_kappa(pairs: Sequence[tuple[Hashable, Hashable]], strata: Sequence[Hashable] | None = None) -> float | None:
    """Cohen's kappa, ``(p_o - p_e) / (1 - p_e)``, of two raters over ``pairs`` ``[(a, b), ...]``.

    ``p_o`` is the raw agreement, ``p_e`` the agreement expected by chance from each rater's own
    label frequencies. With ``strata`` (one per pair, say each label's group, whose values no other
    group shares), chance is reckoned within each stratum and weighted by its pairs: two answers in
    different groups can never agree by chance. None for no pairs. When chance agreement is certain
    (``p_e == 1``: one and the same label throughout) kappa is undefined; it is 1.0 when the raters
    also agree throughout, else 0.0.
    """
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(1 for a, b in pairs if a == b) / n
    if strata is None:
        expected = _chance(pairs)
    else:
        if len(strata) != n:
            raise ValueError("one stratum per pair")
        by_stratum: dict[Hashable, list] = {}
        for pair, stratum in zip(pairs, strata):
            by_stratum.setdefault(stratum, []).append(pair)
        expected = sum(len(group) / n * _chance(group) for group in by_stratum.values())
    if expected >= 1.0:
        return 1.0 if observed >= 1.0 else 0.0
    return (observed - expected) / (1.0 - expected)
