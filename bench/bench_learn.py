#!/usr/bin/env python
"""Bench learning from reviews: fit 6 groups from 16 reviews per option, then relabel 100,000 images.

The compute is what ``manage.py learn`` and ``label`` do between the database reads and writes:
:func:`labeler.core.fewshot.learn_group` per group (cross-validation over every candidate, then the
temperature), and each fit's ``confidence`` + :func:`labeler.core.scoring.decide` over every image,
by chunks as labeling does. The baseline, measured in the same run, proposes one image at a
time through the same classifiers (on a subset, rate extrapolated).

The vectors are synthetic but shaped like the real thing: unit vectors of ViT-B-32's dimension
(512; labeler-tiny's 128 is timed too), one planted cluster centre per option of each group,
text vectors that point only partly at their option's centre (one group the prompts cannot
describe at all), so zero-shot is imperfect and the fits have something real to learn.

The database side is timed apart, on a real SQLite catalog made by the migrations: a smaller
collection of the same synthetic vectors, zero-shot labels, reviews through ``review.decide``,
``learning.learn``, then ``label_collection`` proposing with the stored fits, then a rerun.

    .venv/bin/python bench/bench_learn.py [--images 100000] [--db-images 10000] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from labeler.core import fewshot, scoring  # noqa: E402
from labeler.labeling.bulk import CHUNK_ROWS  # noqa: E402
from labeler.collection import in_session  # noqa: E402

# Realistic groups: a concept with 10 values, a material with 8, ... and one the prompts cannot describe.
GROUPS = {"concept": 10, "material": 8, "handle": 4, "colour": 5, "size": 3, "finish": 4}
UNCAPTIONED = "finish"
SCALE = 100.0  # CLIP's logit scale
TARGET_SECONDS = 2.0


# ----------------------------------------------------------------------------- synthetic collection

def synthetic(n_images: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(image vectors ``[N, D]`` unit float32, truth ``[N, G]`` option indices, ``{group: text vectors [O, D]}``).

    Each image is noise plus its option's centre in every group; each option's text vector is
    part centre, part noise (pure noise for :data:`UNCAPTIONED`), as prompts only partly describe
    what the images share.
    """
    rng = np.random.default_rng(seed)
    centres = {g: scoring.unit(rng.standard_normal((o, dim))) for g, o in GROUPS.items()}
    truth = np.stack([rng.integers(0, o, n_images) for o in GROUPS.values()], axis=1)
    vecs = rng.standard_normal((n_images, dim), dtype=np.float32)
    vecs *= np.float32(1.0 / np.sqrt(dim))
    for g, name in enumerate(GROUPS):
        vecs += np.float32(0.3) * centres[name][truth[:, g]]
    texts = {}
    for name, c in centres.items():
        towards = 0.0 if name == UNCAPTIONED else 0.45
        texts[name] = scoring.unit(towards * c + scoring.unit(rng.standard_normal(c.shape)))
    return scoring.unit(vecs), truth, texts


def pick_reviews(truth: np.ndarray, per_option: int, seed: int = 1) -> list[np.ndarray]:
    """Per group, the rows ``[per_option * O]`` a reviewer looked at: ``per_option`` random images per value."""
    rng = np.random.default_rng(seed)
    return [np.concatenate([rng.choice(np.flatnonzero(truth[:, g] == o), per_option, replace=False)
                            for o in range(n)]) for g, n in enumerate(GROUPS.values())]


# ----------------------------------------------------------------------------- the compute

def fit_all(vecs: np.ndarray, truth: np.ndarray, texts: dict[str, np.ndarray],
            reviewed: list[np.ndarray]) -> list[fewshot.GroupFit]:
    return [fewshot.learn_group(vecs[rows], truth[rows, g], texts[name], SCALE)
            for g, (name, rows) in enumerate(zip(GROUPS, reviewed))]


def propose(vecs: np.ndarray, fits: list[fewshot.GroupFit], chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Answers ``[N, G]`` by chunks, as ``label_collection`` does: confidence, then decide."""
    answers = np.empty((len(vecs), len(fits)), np.int64)
    for start in range(0, len(vecs), chunk_rows):
        chunk = vecs[start:start + chunk_rows]
        for g, fit in enumerate(fits):
            answers[start:start + len(chunk), g] = scoring.decide(fit.classifier.confidence(chunk)).choice
    return answers


def propose_one_by_one(vecs: np.ndarray, fits: list[fewshot.GroupFit]) -> np.ndarray:
    """The baseline: the same classifiers, one image at a time."""
    answers = np.empty((len(vecs), len(fits)), np.int64)
    for i in range(len(vecs)):
        one = vecs[i:i + 1]
        for g, fit in enumerate(fits):
            answers[i, g] = scoring.decide(fit.classifier.confidence(one)).choice[0]
    return answers


def bench_compute(n_images: int, dim: int, per_option: int, loop_images: int) -> dict:
    vecs, truth, texts = synthetic(n_images, dim)
    reviewed = pick_reviews(truth, per_option)
    fit_all(vecs[:2000], truth[:2000], texts, pick_reviews(truth[:2000], 2))  # warm up BLAS and caches
    started = time.perf_counter()
    fits = fit_all(vecs, truth, texts, reviewed)
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    answers = propose(vecs, fits)
    propose_seconds = time.perf_counter() - started

    subset = vecs[:loop_images]
    started = time.perf_counter()
    slow = propose_one_by_one(subset, fits)
    loop_seconds = time.perf_counter() - started
    loop_rate = loop_images / loop_seconds

    zero_shot = [fewshot.zero_shot(texts[name], SCALE) for name in GROUPS]
    groups = {}
    for g, (name, fit) in enumerate(zip(GROUPS, fits)):
        zs = float(np.mean(zero_shot[g].logits(vecs).argmax(axis=1) == truth[:, g]))
        groups[name] = {"options": GROUPS[name], "reviews": len(reviewed[g]), "method": fit.method,
                        "params": fit.params, "accuracy": {"zero_shot": round(zs, 4),
                                                           "learned": round(float(np.mean(answers[:, g] == truth[:, g])), 4)}}
    total = fit_seconds + propose_seconds
    return {
        "images": n_images, "dim": dim, "groups": groups, "reviews_per_option": per_option,
        "fit_seconds": round(fit_seconds, 3), "propose_seconds": round(propose_seconds, 3),
        "compute_seconds": round(total, 3), "images_per_second": round(n_images / total),
        "target_seconds": TARGET_SECONDS, "within_target": total <= TARGET_SECONDS,
        "loop_images": loop_images, "loop_seconds": round(loop_seconds, 3),
        "loop_images_per_second": round(loop_rate, 1),
        "loop_extrapolated_seconds": round(n_images / loop_rate, 1),
        "propose_ratio": round((n_images / loop_rate) / propose_seconds, 1),
        "total_ratio": round((fit_seconds + n_images / loop_rate) / total, 1),
        "answers_agree": float(np.mean(slow == answers[:loop_images])),
    }


# ----------------------------------------------------------------------------- the database side

def prompt_set_yaml() -> str:
    """A prompt set for :data:`GROUPS`: one prompt per option, no templates (their vectors are planted)."""
    groups = {name: {"baseline": "{name}", "options": {f"{name} {o}": {"prompts": [f"{name} {o}"], "templates": []}
                                                       for o in range(n)}}
              for name, n in GROUPS.items()}
    return yaml.safe_dump({"name": "bench-learn", "version": 1, "groups": groups}, sort_keys=False)


def synthetic_collection(home: Path, vecs: np.ndarray, texts: dict[str, np.ndarray]):
    """A real catalog (migrated on open) holding ``vecs`` as images' vectors and ``texts`` as cached prompts.

    The model row is a synthetic spec with every prompt already cached, so nothing loads a model:
    as with real weights once the prompts are cached.
    """
    from sqlalchemy import insert, select

    from labeler.store.catalog import Image, Model, PromptEmbedding, Setting
    from labeler.collection import Collection
    from labeler.config import Config
    from labeler.vectors.model_registry import MODE_KEY, MODEL_KEY

    spec = f"bench-synthetic-{vecs.shape[1]}"
    collection = Collection(Config(home=home, model=spec))
    with collection.session() as s:
        model = Model(spec=spec, dim=vecs.shape[1], preprocess={}, logit_scale=SCALE)
        s.add(model)
        s.add(Setting(key=MODEL_KEY, value=spec))
        s.add(Setting(key=MODE_KEY, value="fp32"))  # as index records it: auto would load the spec
        s.flush()
        model_id = model.id
        for name, text_vecs in texts.items():
            for o, vec in enumerate(text_vecs):
                text = f"{name} {o}"
                s.add(PromptEmbedding(model_id=model_id, text_hash=hashlib.sha256(text.encode()).hexdigest(),
                                      text=text, vector=vec.astype(np.float32).tobytes()))
        s.execute(insert(Image),
                  [{"sha256": hashlib.sha256(str(i).encode()).hexdigest(), "size": 1000, "width": 64, "height": 64,
                    "format": "PNG", "status": "ok"} for i in range(len(vecs))])
    with collection.session() as s:
        ids = list(s.scalars(select(Image.id).order_by(Image.id)))
    in_session(collection.vectors.add, model_id, ids, vecs)
    return collection, np.asarray(ids, np.int64)


def review_like_truth(collection, truth: np.ndarray, ids: np.ndarray, per_option: int) -> int:
    """Per group and true value, ``per_option`` labels accepted or corrected through ``review.decide``."""
    from sqlalchemy import select

    from labeler.review import decisions as review
    from labeler.store.catalog import Label

    done = 0
    row_of = {int(i): r for r, i in enumerate(ids)}
    rng = np.random.default_rng(2)
    with collection.session() as s:
        for g, name in enumerate(GROUPS):
            labels = s.scalars(select(Label).where(Label.group == name).order_by(Label.id)).all()
            by_value: dict[str, list] = {}
            for label in labels:
                by_value.setdefault(f"{name} {truth[row_of[label.image_id], g]}", []).append(label)
            for value, members in sorted(by_value.items()):
                for i in rng.permutation(len(members))[:per_option]:
                    label = members[i]
                    if label.value == value:
                        review.decide(s, label.id, "accept", None, label.version)
                    else:
                        review.decide(s, label.id, "correct", None, label.version, value)
                    done += 1
    return done


def bench_database(n_images: int, dim: int, per_option: int) -> dict:
    from labeler.store import db
    from labeler.labeling import learning
    from labeler.labeling.bulk import label_collection
    from labeler.core.prompts import parse_prompt_set

    vecs, truth, texts = synthetic(n_images, dim, seed=3)
    source = prompt_set_yaml()
    prompt_set = parse_prompt_set(yaml.safe_load(source), "bench-learn.yaml", source,
                                  hashlib.sha256(source.encode()).hexdigest())
    labels = n_images * len(GROUPS)
    with tempfile.TemporaryDirectory(prefix="bench-learn-") as tmp:
        started = time.perf_counter()
        collection, ids = synthetic_collection(Path(tmp) / "home", vecs, texts)
        setup_seconds = time.perf_counter() - started
        first = label_collection(collection, prompt_set)
        started = time.perf_counter()
        reviews = review_like_truth(collection, truth, ids, per_option)
        review_seconds = time.perf_counter() - started
        started = time.perf_counter()
        learned = learning.learn(collection)
        learn_seconds = time.perf_counter() - started
        relabel = label_collection(collection, prompt_set)
        rerun = label_collection(collection, prompt_set)
        db.dispose_engines()
    return {
        "images": n_images, "dim": dim, "labels": labels, "setup_seconds": round(setup_seconds, 2),
        "zero_shot_label": {"seconds": round(first.seconds, 2), "inserted": first.inserted,
                            "us_per_label": round(1e6 * first.seconds / labels, 1)},
        "reviews": reviews, "review_ms_each": round(1e3 * review_seconds / reviews, 2),
        "learn_seconds": round(learn_seconds, 2),
        "methods": {g: e["method"] for g, e in learned.items()},
        "relabel_with_fits": {"seconds": round(relabel.seconds, 2), "updated": relabel.updated,
                              "unchanged": relabel.unchanged, "kept_reviewed": relabel.kept_reviewed,
                              "us_per_label": round(1e6 * relabel.seconds / labels, 1)},
        "rerun": {"seconds": round(rerun.seconds, 2), "unchanged": rerun.unchanged, "updated": rerun.updated,
                  "us_per_label": round(1e6 * rerun.seconds / labels, 1)},
    }


# ----------------------------------------------------------------------------- report

def print_compute(r: dict) -> None:
    print(f"{r['images']:,} images x {len(r['groups'])} groups ({'/'.join(str(g['options']) for g in r['groups'].values())}"
          f" options), dim {r['dim']}, {r['reviews_per_option']} reviews per option")
    print(f"  fit 6 groups:   {r['fit_seconds']:7.3f} s   (learn_group: cross-validation, temperature, final fit)")
    print(f"  propose all:    {r['propose_seconds']:7.3f} s   (confidence + decide, {CHUNK_ROWS:,} rows a chunk)")
    mark = "within" if r["within_target"] else "MISSES"
    print(f"  compute total:  {r['compute_seconds']:7.3f} s   {r['images_per_second']:,} images/s  "
          f"({mark} the {r['target_seconds']:.0f} s target)")
    print(f"  per-image loop: {r['loop_seconds']:7.3f} s   on {r['loop_images']:,} images, "
          f"{r['loop_images_per_second']:,.0f} images/s, {r['loop_extrapolated_seconds']:,.0f} s extrapolated")
    print(f"  ratio:          {r['propose_ratio']:,.0f}x proposing, {r['total_ratio']:,.1f}x fit + propose "
          f"(answers agree on {r['answers_agree']:.1%} of the subset)")
    for name, g in r["groups"].items():
        print(f"    {name:9s} {g['options']:2d} options  {g['method']:9s} accuracy {g['accuracy']['zero_shot']:.3f}"
              f" zero-shot -> {g['accuracy']['learned']:.3f}")


def print_database(r: dict) -> None:
    print(f"database (SQLite, migrated): {r['images']:,} images x {len(GROUPS)} groups = {r['labels']:,} labels, "
          f"dim {r['dim']} (vectors stored in {r['setup_seconds']:.1f} s)")
    z, f, again = r["zero_shot_label"], r["relabel_with_fits"], r["rerun"]
    print(f"  label, zero-shot (inserts): {z['seconds']:6.2f} s  {z['us_per_label']:6.1f} us/label")
    print(f"  {r['reviews']} reviews via review.decide: {r['review_ms_each']:.2f} ms each")
    print(f"  learn (read, fit, store):   {r['learn_seconds']:6.2f} s  methods {r['methods']}")
    print(f"  label with the fits:        {f['seconds']:6.2f} s  {f['us_per_label']:6.1f} us/label  "
          f"({f['updated']:,} updated, {f['unchanged']:,} unchanged, {f['kept_reviewed']} reviewed kept)")
    print(f"  rerun (nothing to write):   {again['seconds']:6.2f} s  {again['us_per_label']:6.1f} us/label  "
          f"({again['unchanged']:,} unchanged)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--dim", type=int, action="append", help="vector dims to time (default: 512 and 128)")
    parser.add_argument("--reviews", type=int, default=16, help="reviews per option")
    parser.add_argument("--loop", type=int, default=2_000, help="images for the per-image loop (rate extrapolated)")
    parser.add_argument("--db-images", type=int, default=10_000, help="images in the SQLite catalog; 0 skips it")
    parser.add_argument("--quick", action="store_true", help="20,000 images, 500 looped, 2,000 in the catalog")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.images, args.loop, args.db_images = 20_000, 500, 2_000
    dims = args.dim or [512, 128]

    result = {"blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
              "compute": [bench_compute(args.images, d, args.reviews, args.loop) for d in dims]}
    if args.db_images:
        result["database"] = bench_database(args.db_images, dims[0], args.reviews)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"OPENBLAS_NUM_THREADS={result['blas_threads']}")
    for r in result["compute"]:
        print_compute(r)
    if "database" in result:
        print_database(result["database"])


if __name__ == "__main__":
    main()
