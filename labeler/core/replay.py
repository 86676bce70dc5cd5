"""Replaying reviews: how good do labels get after K reviews per option? Pure numpy, no database.

A truth file stands in for the reviewer. For each shot count ``K`` the replay reveals ``K``
truth labels per option, in the chosen order, fits exactly as ``learn`` does (which never sees
the rest), and scores the images not revealed. Two orders:

* ``random``: ``K`` random images of each option (an oracle-stratified sample);
* ``informative``: the review queue's "most informative" order, replayed in rounds of one review
  per option: typical images of the collection first (cold start), then, after each refit, the
  most uncertain proposals taking turns over the proposed values. The budget is the same
  ``K x options`` reviews, whatever options they turn out to be.

Shapes: ``N`` images with a truth value, ``D`` dimensions, ``O`` options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import fewshot, prompt_search, scoring

ORDERS = ("random", "informative")


@dataclass(frozen=True)
class ShotResult:
    reviews: int  # total reviews revealed
    accuracy: float  # on the images not revealed
    ece: float
    method: str

    def to_dict(self) -> dict:
        return {"reviews": self.reviews, "accuracy": round(self.accuracy, 4), "ece": round(self.ece, 4),
                "method": self.method}


def _score(fit: fewshot.GroupFit, vecs: np.ndarray, truth: np.ndarray, revealed: np.ndarray) -> tuple[float, float]:
    rest = np.ones(len(truth), bool)
    rest[revealed] = False
    if not rest.any():
        return float("nan"), float("nan")
    confidence = fit.classifier.confidence(vecs[rest])
    correct = confidence.argmax(axis=1) == truth[rest]
    return float(correct.mean()), scoring.expected_calibration_error(confidence.max(axis=1), correct)


def random_reveal(truth: np.ndarray, shots: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``shots`` random images of every option present in ``truth`` ``[N]``."""
    return np.concatenate([rng.permutation(np.flatnonzero(truth == o))[:shots] for o in np.unique(truth)])


def replay_group(vecs: np.ndarray, truth: np.ndarray, text_vecs: np.ndarray, scale: float,
                 shots: list[int], order: str = "random", seed: int = 0,
                 methods: Sequence[str] | None = None,
                 prompts: tuple | None = None) -> dict:
    """``{"zero_shot": acc, "shots": {K: ShotResult}}`` for one group.

    ``vecs`` ``[N, D]`` unit image vectors, ``truth`` ``[N]`` option indices, ``text_vecs`` ``[O, D]``.
    ``shots`` is what ``learn`` would do (every method, the guard choosing). With ``methods``
    (e.g. ``["cache", "gda"]``) the result also has ``"methods": {method: {K: ShotResult}}``:
    each method alone against zero-shot, the guard still deciding, on the same reviews.
    Method ``"prompts"`` (random order only) is ``learn --search-prompts``: ``prompts`` =
    (candidate vectors ``[C, D]``, each option's starting candidate indices, the candidate
    families, optionally the other groups' ensembles ``{name: [[...] per option]}``); the ensembles it
    chooses label the rest zero-shot (``mean-embedding``), with no fit at all.
    """
    if order not in ORDERS:
        raise ValueError(f"unknown order '{order}' (known: {', '.join(ORDERS)})")
    vecs = np.asarray(vecs, np.float32)
    truth = np.asarray(truth, np.int64)
    base = fewshot.zero_shot(text_vecs, scale)
    zero_shot = float((base.logits(vecs).argmax(axis=1) == truth).mean()) if len(truth) else float("nan")
    out: dict = {"zero_shot": zero_shot}
    if order == "random":
        rng = np.random.default_rng(seed)
        reveals = {k: random_reveal(truth, k, rng) for k in sorted(shots)}
        for key, only in [("shots", None)] + [(m, [m]) for m in methods or []]:
            results: dict[int, ShotResult] = {}
            for k, revealed in reveals.items():
                if key == "prompts":
                    results[k] = _prompt_search(vecs, truth, revealed, prompts, scale)
                    continue
                fit = fewshot.learn_group(vecs[revealed], truth[revealed], text_vecs, scale, seed=seed, methods=only)
                acc, ece = _score(fit, vecs, truth, revealed)
                results[k] = ShotResult(len(revealed), acc, ece, fit.method)
            _put(out, key, results)
        return out
    if "prompts" in (methods or []):
        raise ValueError("the prompts method replays in random order only")
    for key, only in [("shots", None)] + [(m, [m]) for m in methods or []]:
        _put(out, key, _informative_replay(vecs, truth, text_vecs, scale, shots, seed, only))
    return out


def _prompt_search(vecs: np.ndarray, truth: np.ndarray, revealed: np.ndarray,
                   prompts: tuple | None, scale: float) -> ShotResult:
    if prompts is None:
        raise ValueError("the prompts method needs the candidates' vectors")
    cand_vecs, start, families, *rest = prompts
    chosen, cv = prompt_search.choose(vecs[revealed], truth[revealed], cand_vecs, start, scale, families,
                                      rest[0] if rest else None)
    fit = fewshot.learn_group(vecs[:0], truth[:0], prompt_search.option_vectors(cand_vecs, chosen), scale)
    acc, ece = _score(fit, vecs, truth, revealed)
    return ShotResult(len(revealed), acc, ece, "prompts" if cv.better() else "zero-shot")


def _put(out: dict, key: str, results: dict[int, "ShotResult"]) -> None:
    if key == "shots":
        out["shots"] = results
    else:
        out.setdefault("methods", {})[key] = results


def _informative_replay(vecs: np.ndarray, truth: np.ndarray, text_vecs: np.ndarray, scale: float, shots: list[int],
                        seed: int, methods: Sequence[str] | None) -> dict[int, ShotResult]:
    n_options = len(np.unique(truth))
    budgets = {k: k * n_options for k in sorted(shots)}
    revealed: list[int] = []
    seen = np.zeros(len(truth), bool)
    fit = fewshot.learn_group(vecs[:0], truth[:0], text_vecs, scale)
    queue = list(fewshot.typical_representatives(vecs, n_options, seed=seed))
    results: dict[int, ShotResult] = {}
    for k, budget in budgets.items():
        while len(revealed) < min(budget, len(truth)):
            take = min(n_options, budget - len(revealed))
            batch = [i for i in queue if not seen[i]][:take]
            if len(batch) < take:  # the queue ran dry: rank what is left
                batch += [i for i in _informative(fit, vecs, seen) if i not in batch][:take - len(batch)]
            for i in batch:
                seen[i] = True
            revealed += batch
            ids = np.asarray(revealed)
            fit = fewshot.learn_group(vecs[ids], truth[ids], text_vecs, scale, seed=seed, methods=methods)
            queue = _informative(fit, vecs, seen)
        acc, ece = _score(fit, vecs, truth, np.asarray(revealed, np.int64))
        results[k] = ShotResult(len(revealed), acc, ece, fit.method)
    return results


def _informative(fit: fewshot.GroupFit, vecs: np.ndarray, seen: np.ndarray) -> list[int]:
    """The unrevealed images in the queue's "most informative" order under the current fit."""
    left = np.flatnonzero(~seen)
    confidence = fit.classifier.confidence(vecs[left])
    top2 = np.sort(confidence, axis=1)[:, -2:] if confidence.shape[1] > 1 else np.c_[confidence, confidence]
    order = fewshot.balanced_order(confidence.argmax(axis=1), top2[:, 1] - top2[:, 0])
    return left[order].tolist()


def reviews_to_reach(results: dict[int, ShotResult], target: float) -> int | None:
    """The fewest reviews at which accuracy reached ``target``, or None if it never did."""
    for k in sorted(results):
        if results[k].accuracy >= target:
            return results[k].reviews
    return None
