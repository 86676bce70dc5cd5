"""Searching the prompt space from reviews: each option's ensemble chosen among candidate prompts.

Pure numpy; no model, no database. The reviews ``X`` ``[K, D]`` (unit image vectors) with
``labels`` ``[K]`` score an ensemble the way ``mean-embedding`` labels: an option's vector is the
renormalised sum of its prompts' unit vectors, and the answer is the option with the highest
cosine. The search is greedy: from the prompt set's own ensembles, each step makes the one move
over all options that most lowers the reviews' cross-entropy at the model's logit scale (smooth,
so one step does not trade a clear prompt for a lucky one that flips a review more): add a
candidate to an option, start an option afresh from one candidate, or drop one of its prompts. It stops when no move helps or each option has :data:`MAX_PROMPTS`.

The result is plain text a person can read and edit, and :func:`cross_validate` says honestly what
it is worth: the search is rerun without each fold of the reviews and scored on that fold.

Shapes: ``K`` reviews, ``D`` dimensions, ``C`` candidates, ``O`` options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from . import fewshot

MAX_PROMPTS = 8  # per option: more only averages the ensemble toward the group's common direction
SHORTLIST = 48  # candidates per option the moves consider: those that best tell its reviews from the rest
MIN_GAIN = 1e-3  # cross-entropy a move must save
SIGMAS = 2.0  # how surely (sign test) the searched ensembles must beat the prompt set's on held-out reviews


@dataclass(frozen=True)
class Ensembles:
    """Per option, the candidate indices of its prompts (``members[o]``), and how well they fit."""

    members: tuple[tuple[int, ...], ...]
    correct: int  # reviews right
    nll: float  # mean cross-entropy of the reviews


def _scores(X: np.ndarray, C: np.ndarray, members: list[list[int]]) -> np.ndarray:
    """Cosines ``[K, O]`` of the reviews with each option's mean-embedding vector."""
    return X @ option_vectors(C, members).T.astype(X.dtype)


def _fit(cos: np.ndarray, y: np.ndarray, scale: float) -> tuple[int, float]:
    z = scale * cos
    lse = _logsumexp(z)
    return int((cos.argmax(axis=1) == y).sum()), float((lse - z[np.arange(len(y)), y]).mean())


def search(image_vecs: np.ndarray, labels: np.ndarray, cand_vecs: np.ndarray, start: list[list[int]],
           scale: float, movable: list[bool] | None = None, max_prompts: int = MAX_PROMPTS,
           max_moves: int | None = None, families: Sequence[np.ndarray] = ()) -> Ensembles:
    """Greedy search of every option's ensemble; ``start[o]``: the candidate indices it starts from.

    ``image_vecs`` ``[K, D]``, ``labels`` ``[K]`` option indices, ``cand_vecs`` ``[C, D]`` unit.
    ``movable[o]`` False keeps option ``o`` as it starts (an option nobody reviewed); ``max_moves``
    stops after that many moves. ``families``: index arrays of candidates that share one form
    (one template filled with many words: "a red object", "a blue object", ...).

    One option's move at a time cannot leave a bias all options share: a prompt's cosine with
    every image depends on its wording as much as on the image, so replacing only "warm" by
    "a red object" makes every image warm. So besides the run from ``start``, one run per family
    starts every movable option afresh from the family's candidate that best tells its reviews
    from the others and moves within the family, where the biases match. The lowest
    cross-entropy wins.
    """
    X = np.asarray(image_vecs, np.float64)
    y = np.asarray(labels, np.int64)
    C = np.asarray(cand_vecs, np.float64)
    movable = [True] * len(start) if movable is None else list(movable)
    XC = (X @ C.T).astype(np.float32)  # the moves' [K, M] arithmetic in float32: half the memory traffic
    runs = [_greedy(X, y, C, start, scale, movable, max_prompts, max_moves, XC, np.arange(len(C)))]
    for family in families:
        family = np.asarray(family, np.int64)
        if not len(family):
            continue
        fresh = [[int(family[_shortlist(XC[:, family], y, o, 1)[0]])] if movable[o] else list(m)
                 for o, m in enumerate(start)]
        runs.append(_greedy(X, y, C, fresh, scale, movable, max_prompts, max_moves, XC, family))
    return min(runs, key=lambda r: (r.nll, -r.correct))


def _greedy(image_vecs: np.ndarray, labels: np.ndarray, cand_vecs: np.ndarray, start: list[list[int]],
            scale: float, movable: list[bool], max_prompts: int, max_moves: int | None, XC: np.ndarray,
            allowed: np.ndarray) -> Ensembles:
    """One greedy run of :func:`search` from ``start``, moving among the ``allowed`` candidates."""
    X = np.asarray(image_vecs, np.float64)
    C = np.asarray(cand_vecs, np.float64)
    y = np.asarray(labels, np.int64)
    members = [list(m) for m in start]
    n_options = len(members)
    movable = [True] * n_options if movable is None else list(movable)
    rows = np.arange(len(y))
    shortlist = [allowed[_shortlist(XC[:, allowed], y, o)] for o in range(n_options)]
    short_vecs = [C[sl] for sl in shortlist]
    others_of = [np.delete(np.arange(n_options), o) for o in range(n_options)]
    scale32 = np.float32(scale)
    cos = _scores(X, C, members)
    cos32 = cos.astype(np.float32)
    correct, nll = _fit(cos, y, scale)
    for _ in range(n_options * max_prompts * 2 if max_moves is None else max_moves):
        best = None  # (correct, -nll, option, new members)
        for o in range(n_options):
            if not movable[o]:
                continue
            mem = members[o]
            s = C[mem].sum(axis=0)  # [D]
            xs = (X @ s).astype(np.float32)  # [K]
            ss = float(s @ s)
            sl = shortlist[o]
            # Candidate moves as (dot with the reviews [K, M], norm of the new sum [M]); ``kinds``
            # says which move each column is, so only the winner's members are ever built.
            dots, norms, kinds = [], [], []
            if len(mem) < max_prompts:
                keep = np.ones(len(sl), bool)
                for q in mem:
                    keep &= sl != q
                idx = sl[keep]
                dots.append(xs[:, None] + XC[:, idx])
                norms.append(np.sqrt(np.maximum(ss + 2 * (short_vecs[o][keep] @ s) + 1.0, 1e-12)))
                kinds.append(("add", idx))
            dots.append(XC[:, sl])
            norms.append(np.ones(len(sl), np.float32))
            kinds.append(("reset", sl))
            if len(mem) > 1:
                drop = np.asarray(mem)
                dots.append(xs[:, None] - XC[:, drop])
                norms.append(np.sqrt(np.maximum(ss - 2 * (C[drop] @ s) + 1.0, 1e-12)))
                kinds.append(("drop", drop))
            new = np.concatenate(dots, axis=1) / np.concatenate(norms).astype(np.float32)[None, :]  # [K, M]
            others = cos32[:, others_of[o]]
            other_max = others.max(axis=1)
            other_arg = others_of[o][others.argmax(axis=1)]
            mine = (y == o)[:, None]
            right = np.where(mine, new > other_max[:, None],
                             (other_arg == y)[:, None] & (new < other_max[:, None]))
            n_right = right.sum(axis=0)  # [M]
            lse_other = _logsumexp(scale32 * others)
            target = np.where(mine, scale32 * new, scale32 * cos32[rows, y][:, None])
            losses = (np.logaddexp(lse_other[:, None], scale32 * new) - target).mean(axis=0, dtype=np.float64)  # [M]
            m = int(np.lexsort((-n_right, losses))[0])
            if best is None or (losses[m], -n_right[m]) < (best[1], -best[0]):
                best = (int(n_right[m]), float(losses[m]), o, _move(mem, kinds, m))
        if best is None or nll - best[1] < MIN_GAIN:
            break
        members[best[2]] = best[3]
        cos = _scores(X, C, members)
        cos32 = cos.astype(np.float32)
        correct, nll = _fit(cos, y, scale)
    return Ensembles(tuple(tuple(m) for m in members), correct, nll)


def _move(members: list[int], kinds: list[tuple[str, np.ndarray]], column: int) -> list[int]:
    """The new members of column ``column`` of :func:`_greedy`'s moves."""
    for kind, idx in kinds:
        if column < len(idx):
            p = int(idx[column])
            return members + [p] if kind == "add" else [p] if kind == "reset" else [q for q in members if q != p]
        column -= len(idx)
    raise IndexError(column)


def _logsumexp(z: np.ndarray) -> np.ndarray:
    """``log(sum(exp(z)))`` along the last axis of ``z`` ``[K, O]``, stably (``logaddexp.reduce``
    is a slow sequential loop)."""
    top = z.max(axis=-1)
    return top + np.log(np.exp(z - top[..., None]).sum(axis=-1))


def _shortlist(XC: np.ndarray, y: np.ndarray, option: int, size: int = SHORTLIST) -> np.ndarray:
    """Indices of the ``size`` candidates whose cosine is highest on the option's reviews relative to
    the other reviews (``XC`` ``[K, C]``), best first; all of them when there are no more."""
    mine = y == option
    lift = (XC[mine].mean(axis=0) if mine.any() else 0.0) - (XC[~mine].mean(axis=0) if (~mine).any() else 0.0)
    return np.argsort(-lift, kind="stable")[:size]


@dataclass(frozen=True)
class CrossValidation:
    """Held-out right/wrong of each review ``[K]``: the starting ensembles and the searched ones."""

    before: np.ndarray
    after: np.ndarray
    source: str = "search"  # what found the ensembles: the greedy search, or a related group's name (map_related)

    @property
    def accuracy(self) -> dict:
        return {"before": round(float(self.before.mean()), 4), "after": round(float(self.after.mean()), 4)}

    def better(self) -> bool:
        """Whether the search surely helps on reviews it did not see (a sign test, :data:`SIGMAS`)."""
        return fewshot.beats(self.after, self.before, SIGMAS)


def cross_validate(image_vecs: np.ndarray, labels: np.ndarray, cand_vecs: np.ndarray, start: list[list[int]],
                   scale: float, movable: list[bool] | None = None, folds: int = fewshot.FOLDS,
                   seed: int = 0, families: Sequence[np.ndarray] = (),
                   fold_done: Callable[[int, int], None] | None = None) -> CrossValidation:
    """Rerun :func:`search` without each stratified fold of the reviews and score it on that fold.

    ``fold_done(done, folds)`` is called after each fold (a job's progress)."""
    def fit(X: np.ndarray, y: np.ndarray) -> list[list[int]]:
        return [list(m) for m in search(X, y, cand_vecs, start, scale, movable, families=families).members]

    return _held_out(image_vecs, labels, cand_vecs, start, fit, folds, seed, fold_done)


def _held_out(image_vecs: np.ndarray, labels: np.ndarray, cand_vecs: np.ndarray, start: list[list[int]],
              fit: Callable[[np.ndarray, np.ndarray], list[list[int]] | None], folds: int = fewshot.FOLDS,
              seed: int = 0, fold_done: Callable[[int, int], None] | None = None,
              source: str = "search") -> CrossValidation:
    """Held-out right/wrong of ``start`` and of ``fit(X_train, y_train)``'s ensembles (None: keep
    ``start`` for that fold), over stratified folds of the reviews."""
    X = np.asarray(image_vecs, np.float64)
    y = np.asarray(labels, np.int64)
    C = np.asarray(cand_vecs, np.float64)
    before = _scores(X, C, [list(m) for m in start]).argmax(axis=1) == y
    after = before.copy()
    fold = fewshot.stratified_folds(y, fewshot.fold_count(y, folds), seed)
    ids = np.unique(fold)
    for done, f in enumerate(ids, 1):
        train, test = fold != f, fold == f
        found = fit(X[train], y[train]) if len(np.unique(y[train])) >= 2 else None
        if found is not None:
            after[test] = _scores(X[test], C, found).argmax(axis=1) == y[test]
        if fold_done is not None:
            fold_done(done, len(ids))
    return CrossValidation(before, after, source)


def map_related(image_vecs: np.ndarray, labels: np.ndarray, cand_vecs: np.ndarray, start: list[list[int]],
                related: list[list[int]]) -> list[list[int]] | None:
    """Each option described by whole options of a related group, the way a person writes "a red
    object", "an orange object", "a yellow object" under "warm"; None when some reviewed option
    gets none.

    ``related[g]``: the candidate indices of the related group's option ``g`` (its ensemble). Each
    review votes for its option on the related option it is closest to (``mean-embedding``); a
    related option goes, with all its prompts, to the option most of its reviews have (a tie:
    to none). Related options no review is closest to are left out: nothing says where they
    belong (labeler-tiny knows no more about "orange" being warm from the pictures or the words
    than from a coin; see the README). Options nobody reviewed keep ``start``.
    """
    X = np.asarray(image_vecs, np.float64)
    y = np.asarray(labels, np.int64)
    nearest = _scores(X, np.asarray(cand_vecs, np.float64), related).argmax(axis=1)  # [K]
    votes = np.zeros((len(related), len(start)), np.int64)
    np.add.at(votes, (nearest, y), 1)
    members: list[list[int]] = [[] for _ in start]
    for g, row in enumerate(votes):
        top = np.flatnonzero(row == row.max())
        if row.max() > 0 and len(top) == 1:
            members[int(top[0])] += [i for i in related[g] if i not in members[int(top[0])]]
    reviewed = np.bincount(y, minlength=len(start)) > 0
    if any(r and not m for r, m in zip(reviewed, members)):
        return None
    return [m if r else list(s) for m, r, s in zip(members, reviewed, start)]


def propose(image_vecs: np.ndarray, labels: np.ndarray, cand_vecs: np.ndarray, start: list[list[int]],
            scale: float, families: Sequence[np.ndarray] = (), related: Mapping[str, list[list[int]]] | None = None,
            fold_done: Callable[[int, int], None] | None = None,
            only_if_better: bool = False) -> tuple[list[list[int]], CrossValidation]:
    """The best ensembles the reviews can find, whether or not they beat ``start`` (with
    ``only_if_better``, ``start`` when they do not, without the final search), and the
    cross-validation that chose them.

    Two kinds of answer compete on held-out reviews: the greedy :func:`search`, and for each
    related group (``related[name][g]``: its option ``g``'s candidate indices) the mapping of its
    options onto these (:func:`map_related`). Few reviews seldom show every colour of "warm", and
    a search among a thousand prompts then fits the reviews it saw; a mapping chooses only which
    option each colour belongs to, so it overfits less. The highest held-out accuracy wins (a
    tie: the mapping, the fewer choices). ``fold_done(done, folds)`` follows the search's folds.
    """
    y = np.asarray(labels, np.int64)
    movable = (np.bincount(y, minlength=len(start)) > 0).tolist()
    best = cross_validate(image_vecs, y, cand_vecs, start, scale, movable, families=families, fold_done=fold_done)
    fits: dict[str, Callable[[np.ndarray, np.ndarray], list[list[int]] | None]] = {}
    for name, group in (related or {}).items():
        def fit(X: np.ndarray, labels: np.ndarray, group: list[list[int]] = group) -> list[list[int]] | None:
            return map_related(X, labels, cand_vecs, start, group)

        if fit(image_vecs, y) is None:
            continue
        cv = _held_out(image_vecs, y, cand_vecs, start, fit, source=name)
        if cv.after.mean() >= best.after.mean():
            best, fits[cv.source] = cv, fit
    if only_if_better and not best.better():
        return [list(m) for m in start], best
    if best.source in fits:
        return fits[best.source](image_vecs, y), best
    return [list(m) for m in search(image_vecs, y, cand_vecs, start, scale, movable, families=families).members], best


def choose(image_vecs: np.ndarray, labels: np.ndarray, cand_vecs: np.ndarray, start: list[list[int]],
           scale: float, families: Sequence[np.ndarray] = (),
           related: Mapping[str, list[list[int]]] | None = None) -> tuple[list[list[int]], CrossValidation]:
    """What ``learn --search-prompts`` keeps: :func:`propose`'s ensembles if they surely beat
    ``start`` on held-out reviews, else ``start``; with the cross-validation that decided. Options
    nobody reviewed keep their prompts."""
    return propose(image_vecs, labels, cand_vecs, start, scale, families, related, only_if_better=True)


def option_vectors(cand_vecs: np.ndarray, members: list[list[int]]) -> np.ndarray:
    """The ``mean-embedding`` option vectors ``[O, D]`` of the ensembles ``members``."""
    C = np.asarray(cand_vecs, np.float64)
    sums = np.stack([C[m].sum(axis=0) for m in members])
    return (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)
