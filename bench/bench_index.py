#!/usr/bin/env python
"""Bench the index at scale: appending, saving, opening and searching N vectors of dim 512.

A synthetic collection (1,000 Gaussian clusters on the unit sphere, each point at cosine ≈ 0.75
from its centre, as CLIP image vectors of one kind of thing are) is written into a temporary
home through the library (image rows in bulk, vectors through ``VectorStore.add``); the index is
built by ``IndexKeeper`` with the configured type (``auto``: IVF from 50,000 vectors). Then:

* **append**: 20 batches of 64 new vectors go the writer's way (``VectorStore.add``, then
  ``IndexKeeper.catch_up`` and ``checkpoint``); index maintenance per batch, with the saves it
  triggers amortised, against the old way measured in the same run on a Flat index of the same
  N: ``remove_ids`` + ``add`` per batch and a full save + fsync every 256 images;
* maintenance as a share of embedding time per batch: ``labeler-tiny`` measured here, ViT-B-32
  from the issue's measurement on this CPU (11 h per 1M images: 40 ms per image);
* **open**: a fresh ``IndexKeeper.get()`` (header stamp, file load, replay of 64 newer rows)
  against the old open (file load, every stored id read, ``setdiff1d``);
* **search**: in-process p50/p99 over 200 single queries, exact Flat against the chosen index,
  and recall@10 of the chosen index against its exact scan (what ``search --exact`` does) on 20
  queries (noisy cluster centres); the exact scan is checked against Flat.

    PYTHONPATH=. .venv/bin/python bench/bench_index.py [--images 100000] [--type auto] [--json]

Numbers vary with the machine's load; the ratios are measured in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from sqlalchemy import insert

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from labeler.store.catalog import Image, Model, Setting  # noqa: E402
from labeler.collection import Collection, in_session  # noqa: E402
from labeler.config import Config  # noqa: E402
from labeler.vectors.index import FaissIndex  # noqa: E402
from labeler.vectors.index_keeper import SAVE_FRACTION, measure_recall  # noqa: E402
from labeler.vectors.model_registry import MODE_KEY, MODEL_KEY  # noqa: E402

DIM, CLUSTERS, BATCH, BATCHES, OLD_CHECKPOINT = 512, 1000, 64, 20, 256
SPREAD = 0.039  # per-dimension noise: cosine ≈ 0.75 between a point and its cluster centre
VIT_B32_S_PER_IMAGE = 0.040  # the issue: about 11 hours to embed 1M images with ViT-B-32 on this CPU
SPEC = "bench-synthetic-512"


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def points(rng: np.random.Generator, centres: np.ndarray, n: int) -> np.ndarray:
    """``n`` unit vectors ``[n, DIM]`` around random ``centres``."""
    return unit(centres[rng.integers(0, len(centres), n)] + rng.standard_normal((n, DIM), np.float32) * SPREAD)


def add_images(collection: Collection, model_id: int, vectors: np.ndarray, first: int) -> list[int]:
    """Image rows (bulk insert: the library has no API for images without files), then their
    vectors through ``VectorStore.add``, as the writer stores them."""
    ids = list(range(first, first + len(vectors)))
    with collection.session() as s:
        s.execute(insert(Image), [{"id": i, "sha256": f"{i:064x}", "size": 1, "width": 1, "height": 1,
                                   "format": "PNG", "status": "ok"} for i in ids])
    in_session(collection.vectors.add, model_id, ids, vectors)
    return ids


def build(home: Path, n: int, rng: np.random.Generator, centres: np.ndarray, index_type: str) -> Collection:
    config = Config(home=home, model=SPEC, index_factory=index_type)
    collection = Collection(config)
    with collection.session() as s:
        model = Model(spec=SPEC, dim=DIM, preprocess={}, logit_scale=100.0)
        s.add(model)
        s.flush()
        s.add(Setting(key=MODEL_KEY, value=SPEC))
        s.add(Setting(key=MODE_KEY, value="fp32"))  # as index records it: auto would load the spec
        model_id = model.id
    for start in range(0, n, 20_000):
        add_images(collection, model_id, points(rng, centres, min(20_000, n - start)), first=start + 1)
    return collection


def percentiles(times: list[float]) -> dict:
    return {"p50_ms": round(float(np.percentile(times, 50)) * 1e3, 3),
            "p99_ms": round(float(np.percentile(times, 99)) * 1e3, 3)}


def time_searches(search, queries: np.ndarray) -> dict:
    """p50/p99 of ``search(q)`` for single queries ``q`` ``[1, DIM]``."""
    times = []
    for q in queries:
        started = time.perf_counter()
        search(q[None, :])
        times.append(time.perf_counter() - started)
    return percentiles(times)


def read_all(collection: Collection) -> tuple[np.ndarray, np.ndarray]:
    """Every stored vector, chunk by chunk into one array (``VectorStore.read`` at once would hold
    the rows and their bytes as well: three copies at 1M)."""
    total = in_session(collection.vectors.count_present)
    ids, vecs, at = np.zeros(total, np.int64), np.zeros((total, DIM), np.float32), 0
    for chunk_ids, chunk in in_session(collection.vectors.chunks):
        ids[at:at + len(chunk_ids)], vecs[at:at + len(chunk_ids)] = chunk_ids, chunk
        at += len(chunk_ids)
    return ids[:at], vecs[:at]


def old_save(index: faiss.Index, path: Path) -> float:
    """The old save: the whole index written and fsynced."""
    started = time.perf_counter()
    faiss.write_index(index, str(path))
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
    return time.perf_counter() - started


def embedding_s_per_batch(model: str | None) -> float | None:
    if not model:
        return None
    import torch

    from labeler.encoding.encoder import load_encoder

    encoder = load_encoder(model, "cpu")
    pixels = [torch.rand(3, encoder.image_size, encoder.image_size) for _ in range(BATCH)]
    encoder.encode_images(pixels)  # warm
    started = time.perf_counter()
    for _ in range(3):
        encoder.encode_images(pixels)
    return (time.perf_counter() - started) / 3


def run(n: int, index_type: str, model: str | None) -> dict:
    rng = np.random.default_rng(0)
    centres = unit(rng.standard_normal((CLUSTERS, DIM), np.float32))
    out: dict = {"images": n, "dim": DIM, "batch": BATCH}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        started = time.perf_counter()
        collection = build(home, n, rng, centres, index_type)
        out["build_catalog_s"] = round(time.perf_counter() - started, 2)
        cache = collection.index_keeper
        model_id = in_session(collection.models.require_id)

        started = time.perf_counter()
        index = in_session(cache.get)  # no file yet: built from the stored vectors
        out["build_index_s"] = round(time.perf_counter() - started, 2)
        out["index"] = index.describe()

        # -- append, the writer's way -------------------------------------------------------
        started = time.perf_counter()
        in_session(cache.save)
        save_s = time.perf_counter() - started
        catalog_s, maintain_s, next_id = [], [], n + 1
        for _ in range(BATCHES):
            vecs = points(rng, centres, BATCH)
            t0 = time.perf_counter()
            ids = add_images(collection, model_id, vecs, next_id)
            t1 = time.perf_counter()
            in_session(cache.catch_up, known=(np.asarray(ids), vecs))
            in_session(cache.checkpoint)
            t2 = time.perf_counter()
            catalog_s.append(t1 - t0)
            maintain_s.append(t2 - t1)
            next_id += BATCH
        saves_per_batch = BATCH / max(cache.config.checkpoint_every, (n + BATCH * BATCHES) * SAVE_FRACTION)
        new_batch_s = float(np.median(maintain_s)) + save_s * saves_per_batch

        # -- the old way, on a Flat index of the same size -----------------------------------
        all_ids, all_vecs = read_all(collection)
        flat = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
        flat.add_with_ids(all_vecs[:-BATCH * BATCHES], all_ids[:-BATCH * BATCHES])
        old_s = []
        for start in range(len(all_ids) - BATCH * BATCHES, len(all_ids), BATCH):
            t0 = time.perf_counter()
            batch_ids = np.ascontiguousarray(all_ids[start:start + BATCH])
            flat.remove_ids(faiss.IDSelectorBatch(batch_ids))
            flat.add_with_ids(all_vecs[start:start + BATCH], batch_ids)
            old_s.append(time.perf_counter() - t0)
        del all_ids, all_vecs  # the Flat index holds its own copy; memory stays at two indexes
        old_save_s = old_save(flat, Path(tmp) / "old.faiss")
        (Path(tmp) / "old.faiss").unlink()
        old_batch_s = float(np.median(old_s)) + old_save_s * BATCH / OLD_CHECKPOINT

        embed_s = embedding_s_per_batch(model)
        vit_s = VIT_B32_S_PER_IMAGE * BATCH
        out["append"] = {
            "catalog_write_ms_per_batch": round(float(np.median(catalog_s)) * 1e3, 2),
            "index_ms_per_batch": round(float(np.median(maintain_s)) * 1e3, 3),
            "save_s": round(save_s, 3),
            "index_with_saves_ms_per_batch": round(new_batch_s * 1e3, 3),
            "old_remove_add_ms_per_batch": round(float(np.median(old_s)) * 1e3, 3),
            "old_save_s": round(old_save_s, 3),
            "old_with_saves_ms_per_batch": round(old_batch_s * 1e3, 3),
            "speedup_vs_old": round(old_batch_s / new_batch_s, 1),
            "embed_labeler_tiny_ms_per_batch": None if embed_s is None else round(embed_s * 1e3, 1),
            "index_pct_of_labeler_tiny": None if embed_s is None else round(100 * new_batch_s / embed_s, 2),
            "old_pct_of_labeler_tiny": None if embed_s is None else round(100 * old_batch_s / embed_s, 2),
            "index_pct_of_vit_b32": round(100 * new_batch_s / vit_s, 3),
            "old_pct_of_vit_b32": round(100 * old_batch_s / vit_s, 2),
        }

        # -- open --------------------------------------------------------------------------
        in_session(cache.save)
        newer = points(rng, centres, BATCH)
        flat.add_with_ids(newer, np.asarray(add_images(collection, model_id, newer, next_id)))  # after the stamp
        config = collection.config
        del cache, index, collection  # one index in memory at a time (2 GB at 1M)
        collection = Collection(config)
        reopened = collection.index_keeper
        started = time.perf_counter()
        index = in_session(reopened.get)
        open_s = time.perf_counter() - started
        started = time.perf_counter()
        old = FaissIndex.load(reopened.path(model_id))
        stored, have = in_session(collection.vectors.ids, model_id), old.ids()
        np.setdiff1d(have, stored), np.setdiff1d(stored, have)
        old_open_s = time.perf_counter() - started
        del old
        out["open"] = {"stamp_open_s": round(open_s, 3), "replayed": reopened.last_replay["changes"],
                       "old_full_sync_s": round(old_open_s, 3), "speedup": round(old_open_s / open_s, 1)}

        # -- search: the old exact Flat against the chosen index ---------------------------
        queries = unit(centres[rng.integers(0, CLUSTERS, 200)] + rng.standard_normal((200, DIM), np.float32) * 0.03)
        out["search"] = {"flat": time_searches(lambda q: flat.search(q, 10), queries),
                         "chosen": time_searches(lambda q: index.search(q, 10), queries)}
        truth = index.search(queries[:20], 10, exact=True)
        _, flat_ids = flat.search(queries[:20], 10)
        out["search"]["recall_at_10"] = round(measure_recall(index, queries[:20], 10, truth), 3)
        out["search"]["exact_agrees_with_flat"] = round(float(np.mean(
            [len(set(t) & set(f)) / 10 for t, f in zip(truth[1], flat_ids)])), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--type", default="auto", help="auto, flat, ivf, hnsw or a FAISS factory string")
    parser.add_argument("--model", default="labeler-tiny", help="model whose embedding time is measured ('' skips)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.images, args.type, args.model or None)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    a, o, s = result["append"], result["open"], result["search"]
    print(f"{result['images']:,} vectors of dim {DIM}; catalog built in {result['build_catalog_s']} s, "
          f"index in {result['build_index_s']} s: {result['index']}")
    print(f"append, per batch of {BATCH}: index {a['index_ms_per_batch']} ms, with saves amortised "
          f"{a['index_with_saves_ms_per_batch']} ms (one save {a['save_s']} s); old remove+add "
          f"{a['old_remove_add_ms_per_batch']} ms, with a save every {OLD_CHECKPOINT} "
          f"{a['old_with_saves_ms_per_batch']} ms (one save {a['old_save_s']} s): {a['speedup_vs_old']}x less")
    print(f"  as share of embedding: labeler-tiny ({a['embed_labeler_tiny_ms_per_batch']} ms/batch) "
          f"{a['index_pct_of_labeler_tiny']}% (old {a['old_pct_of_labeler_tiny']}%); "
          f"ViT-B-32 (est. {VIT_B32_S_PER_IMAGE * BATCH:.2f} s/batch) {a['index_pct_of_vit_b32']}% "
          f"(old {a['old_pct_of_vit_b32']}%); catalog write {a['catalog_write_ms_per_batch']} ms")
    print(f"open: stamp + replay of {o['replayed']} rows {o['stamp_open_s']} s; old full id sync "
          f"{o['old_full_sync_s']} s ({o['speedup']}x)")
    print(f"search p50/p99: flat {s['flat']['p50_ms']}/{s['flat']['p99_ms']} ms, "
          f"{result['index']['type']} {s['chosen']['p50_ms']}/{s['chosen']['p99_ms']} ms; "
          f"recall@10 {s['recall_at_10']} on 20 queries vs --exact (which agrees with Flat: {s['exact_agrees_with_flat']})")


if __name__ == "__main__":
    main()
