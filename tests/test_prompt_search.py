"""The prompt search on arrays: the greedy's bookkeeping, what it finds, and its honest cross-validation."""

from __future__ import annotations

import itertools

import numpy as np

from labeler.core import prompt_search
from labeler.core.scoring import unit

DIM = 32


def planted(rng: np.random.Generator, n_options: int = 3, per_option: int = 6, noise: int = 40):
    """Images of ``n_options`` options, each option two "colours"; candidates: one prompt per colour,
    plus noise prompts, plus one vague prompt per option that points nowhere useful.

    Returns (images [N, D], labels [N], candidates [C, D], the right prompts per option, the vague
    ones, the colours [2 O, D]).
    """
    colours = unit(rng.normal(size=(2 * n_options, DIM)))
    shade = rng.integers(0, 2, n_options * per_option)
    labels = np.repeat(np.arange(n_options), per_option)
    images = unit(colours[2 * labels + shade] + 0.8 * unit(rng.normal(size=(len(labels), DIM))))
    vague = unit(rng.normal(size=(n_options, DIM)))
    # Prompts of one form ("a red object", "a blue object") share the form's direction, as text does.
    form = unit(rng.normal(size=DIM))
    named = unit(2.0 * form + colours)
    candidates = np.concatenate([named, unit(rng.normal(size=(noise, DIM))), vague])
    right = [[2 * o, 2 * o + 1] for o in range(n_options)]
    start = [[2 * n_options + noise + o] for o in range(n_options)]
    return images, labels, candidates, right, start, colours


def test_the_first_move_is_the_best_of_every_possible_move_recomputed_from_scratch():
    rng = np.random.default_rng(1)
    images, labels, candidates, _, start, _ = planted(rng, noise=10)
    scale = 20.0

    def fit(members):
        return prompt_search._fit(prompt_search._scores(images, candidates, members), labels, scale)

    moves = []
    for o, p in itertools.product(range(3), range(len(candidates))):
        for new in ([*start[o], p] if p not in start[o] else None, [p]):
            if new is not None:
                members = [list(m) for m in start]
                members[o] = new
                right, nll = fit(members)
                moves.append((-right, nll, members))
    moves.sort(key=lambda m: (m[1], m[0]))
    found = prompt_search.search(images, labels, candidates, start, scale, max_moves=1)
    assert [list(m) for m in found.members] == moves[0][2]
    assert (found.correct, round(found.nll, 6)) == (-moves[0][0], round(moves[0][1], 6))


def test_the_search_replaces_vague_prompts_by_the_ones_that_name_what_the_images_share():
    rng = np.random.default_rng(2)
    images, labels, candidates, right, start, colours = planted(rng, per_option=8)
    family = [np.arange(6)]  # one family: the same form filled with each colour's word
    found = prompt_search.search(images, labels, candidates, start, 20.0, families=family)
    assert found.correct == len(labels)
    named = sum(len(set(m) & set(right[o])) for o, m in enumerate(found.members))
    assert named >= 2  # colour prompts, each under its own option
    # Held out, the search beats the vague prompts, and says so surely.
    cv = prompt_search.cross_validate(images, labels, candidates, start, 20.0, families=family)
    assert cv.accuracy["after"] > cv.accuracy["before"] + 0.3 and cv.better()
    chosen, _ = prompt_search.choose(images, labels, candidates, start, 20.0, family)
    assert chosen == [list(m) for m in found.members]
    # Unseen images of the same options: the chosen prompts label them, zero-shot.
    rng = np.random.default_rng(20)
    shade = rng.integers(0, 2, 300)
    fresh_labels = rng.integers(0, 3, 300)
    fresh = unit(colours[2 * fresh_labels + shade] + 0.8 * unit(rng.normal(size=(300, DIM))))
    right_now = (fresh @ prompt_search.option_vectors(candidates, chosen).T).argmax(axis=1) == fresh_labels
    vague = (fresh @ prompt_search.option_vectors(candidates, start).T).argmax(axis=1) == fresh_labels
    assert right_now.mean() > 0.85 > vague.mean() + 0.4


def test_an_option_nobody_reviewed_keeps_its_prompts_and_good_prompts_stay():
    rng = np.random.default_rng(3)
    images, labels, candidates, right, start, colours = planted(rng, per_option=8)
    seen = labels != 2
    chosen, _ = prompt_search.choose(images[seen], labels[seen], candidates, start, 20.0, [np.arange(6)])
    assert chosen[2] == start[2] and chosen != start
    # Prompts that are already right are not traded for others on noise.
    good = [list(r) for r in right]
    chosen, cv = prompt_search.choose(images, labels, candidates, good, 20.0, [np.arange(6)])
    assert cv.accuracy["before"] > 0.9
    assert chosen == good


def test_a_related_group_maps_whole_options_onto_the_reviewed_ones():
    rng = np.random.default_rng(3)
    images, labels, candidates, right, start, _ = planted(rng, n_options=3, per_option=12)
    # The related group ("colour") has one option per colour, each its one named prompt.
    colour = [[c] for c in range(6)]
    mapped = prompt_search.map_related(images, labels, candidates, start, colour)
    assert mapped == right
    # A colour no review shows is left out: nothing says which option it belongs to.
    seen_one = (labels != 0) | (np.arange(len(labels)) == np.flatnonzero(labels == 0)[0])
    one = prompt_search.map_related(images[seen_one], labels[seen_one], candidates, start, colour)
    first = images[np.flatnonzero(labels == 0)[0]]
    nearest = int(np.argmax(unit(candidates[:6]) @ first))
    assert one[0] == [nearest] and one[1:] == right[1:]
    # An option that no related option describes: no mapping at all.
    assert prompt_search.map_related(images, labels, candidates, start, colour[:2]) is None
    # An option nobody reviewed keeps its prompts.
    some = labels != 2
    assert prompt_search.map_related(images[some], labels[some], candidates, start, colour)[2] == start[2]


def test_propose_prefers_the_mapping_when_it_holds_up_better_on_held_out_reviews():
    rng = np.random.default_rng(5)
    images, labels, candidates, right, start, _ = planted(rng, n_options=3, per_option=8)
    found, cv = prompt_search.propose(images, labels, candidates, start, 20.0, [np.arange(6)],
                                      {"colour": [[c] for c in range(6)], "noise": [[6], [7], [8]]})
    assert cv.source == "colour" and found == right
    assert cv.accuracy["after"] >= cv.accuracy["before"]
    chosen, guarded = prompt_search.choose(images, labels, candidates, start, 20.0, [np.arange(6)],
                                           {"colour": [[c] for c in range(6)]})
    assert guarded.better() and chosen == right
