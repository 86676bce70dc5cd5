"""The index at scale: it grows by appending, opens by replaying the catalog's change log, and
turns approximate (IVF) above a size, with its recall measured against an exact scan."""

from __future__ import annotations

import json
import struct

import faiss
import numpy as np
import pytest
from sqlalchemy import select

from labeler.store.catalog import Image, IndexChange
from labeler.collection import Collection, in_session
from labeler.vectors.index import MAGIC, FaissIndex, read_stamp
from labeler.ingest.run import index_paths
from labeler.search import search
from tests.imagegen import write_good_images

TEXTS = ["a hammer", "a red object", "a wooden tool", "a blue screwdriver", "pliers", "a metal wrench",
         "something green", "a saw", "a small object", "a yellow thing"]


def _in_sync(collection: Collection) -> bool:
    ids, _ = in_session(collection.vectors.read)
    return sorted(in_session(collection.index_keeper.get).ids().tolist()) == ids.tolist()


def test_appending_never_rewrites_the_index_per_batch(empty_config, world):
    collection = Collection(empty_config.with_(batch_size=2, checkpoint_every=1))
    report = index_paths(collection, [world])
    cache, n = collection.index_keeper, report.embedded
    assert n == 40 and _in_sync(collection)
    # 20 batches; the old writer saved after each (40 + 38 + ... = 420 vectors written). A save
    # waits for a quarter of the index to be unsaved, so the vectors written stay O(N).
    assert cache.saves <= 12 and cache.saved_vectors <= 4 * n
    assert read_stamp(cache.path(in_session(collection.models.current_id)))["count"] == n


def _six_written_without_the_index(collection: Collection, tmp_path, seed: int) -> tuple[list[int], np.ndarray]:
    """Six new images registered and given vectors (copies of stored ones) by a process that never
    touches the index file; returns their ids and the collection's vectors before them."""
    photos = tmp_path / "more"
    write_good_images(photos, 6, seed=seed)
    index_paths(Collection(collection.config), [photos], embed=False)
    with collection.session() as s:
        new_ids = sorted(s.scalars(select(Image.id).order_by(Image.id.desc()).limit(6)))
    _, vecs = in_session(collection.vectors.read)
    in_session(collection.vectors.add, in_session(collection.models.current_id), new_ids, vecs[:6])
    return new_ids, vecs


def test_open_replays_only_the_changes_after_its_stamp(indexed_collection, tmp_path):
    config = indexed_collection.config
    model_id = in_session(indexed_collection.models.current_id)
    before = read_stamp(indexed_collection.index_keeper.path(model_id))
    # Another process registers 6 images and stores their vectors, then dies before saving the index.
    new_ids, vecs = _six_written_without_the_index(indexed_collection, tmp_path, seed=50)

    opened = Collection(config).index_keeper
    index = in_session(opened.get)
    assert opened.last_replay == {"changes": 6, "added": 6, "removed": 0}  # not the 40 it already had
    assert index.stamp["build"] == before["build"]  # caught up, not rebuilt
    assert index.stamp["change"] > before["change"] and len(index) == 46
    assert set(new_ids) <= set(index.ids().tolist())
    _, found = index.search(vecs[:1], 2)
    assert {int(found[0][0]), int(found[0][1])} == {int(in_session(indexed_collection.vectors.ids)[0]), new_ids[0]}


def test_an_index_opened_past_the_ivf_threshold_becomes_ivf(indexed_collection, tmp_path):
    """Vectors written by a process that never checkpointed (a bulk import) still get the index
    type the collection's size calls for, the first time a reader replays them."""
    config = indexed_collection.config.with_(index_ivf_above=16)
    model_id = in_session(indexed_collection.models.current_id)
    assert in_session(indexed_collection.index_keeper.get).kind == "flat"
    _six_written_without_the_index(indexed_collection, tmp_path, seed=51)

    opened = Collection(config)
    index = in_session(opened.index_keeper.get)
    assert index.kind == "ivf" and len(index) == 46 and _in_sync(opened)
    assert read_stamp(opened.index_keeper.path(model_id))["count"] == 46  # saved as IVF, not replayed again
    assert in_session(Collection(config).index_keeper.get).kind == "ivf"


def test_an_image_gone_or_back_reaches_an_open_index(indexed_collection):
    cache = indexed_collection.index_keeper
    in_session(cache.get)
    # Marked missing by any code path (here by hand): the catalog's trigger logs it.
    with indexed_collection.session() as s:
        victim = s.scalar(select(Image).where(Image.status == "ok").order_by(Image.id))
        victim.status = "missing"
    assert victim.id in in_session(cache.get).ids().tolist()  # an open index follows at its next refresh
    in_session(cache.catch_up)
    assert victim.id not in in_session(cache.get).ids().tolist()
    assert cache.last_replay == {"changes": 1, "added": 0, "removed": 1}
    with indexed_collection.session() as s:
        s.get(Image, victim.id).status = "ok"
    in_session(cache.catch_up)
    assert cache.last_replay == {"changes": 1, "added": 1, "removed": 0} and _in_sync(indexed_collection)
    assert in_session(Collection(indexed_collection.config).index_keeper.problems) == []


def test_files_deleted_from_disk_leave_the_index(empty_config, tmp_path):
    photos = tmp_path / "photos"
    paths = write_good_images(photos, 8, seed=3)
    collection = Collection(empty_config)
    index_paths(collection, [photos])
    before = set(in_session(collection.index_keeper.get).ids().tolist())
    for p in paths[:2]:
        p.unlink()
    report = index_paths(collection, [photos])
    assert report.missing == 2
    after = set(in_session(Collection(empty_config).index_keeper.get).ids().tolist())
    assert len(after) == 6 and after < before and _in_sync(collection)
    with collection.session() as s:  # the triggers logged exactly those two images leaving
        removed = s.scalars(select(IndexChange.image_id).where(IndexChange.op == "remove")).all()
    assert sorted(removed) == sorted(before - after)


def test_ivf_takes_over_above_the_threshold_and_keeps_its_recall(empty_config, world):
    config = empty_config.with_(batch_size=8, index_ivf_above=16)
    collection = Collection(config)
    index_paths(collection, [world])
    index = in_session(collection.index_keeper.get)
    assert index.kind == "ivf" and index.nlist == 16 and 1 <= index.nprobe <= 16 and _in_sync(collection)
    assert in_session(collection.index_keeper.recall) >= 0.95
    overlap = []
    for text in TEXTS:
        approx = {h.image_id for h in search(collection, text, k=10)}
        exact = [h.image_id for h in search(collection, text, k=10, exact=True)]
        overlap.append(len(approx & set(exact)) / len(exact))
    assert np.mean(overlap) >= 0.95
    # Below the threshold the same setting stays exact.
    small = Collection(empty_config.with_(index_ivf_above=1000))
    assert in_session(small.index_keeper.rebuild).kind == "flat"


def test_exact_search_is_exact_for_every_index_type(indexed_collection):
    ids, vecs = in_session(indexed_collection.vectors.read)
    truth = np.argsort(-(vecs[:5] @ vecs.T), axis=1, kind="stable")[:, :10]
    for spec in ("flat", "IVF16,Flat", "hnsw"):
        index = in_session(indexed_collection.index_keeper.rebuild, spec)
        _, found = index.search(vecs[:5], 10, exact=True)
        assert [set(row) for row in found.tolist()] == [set(ids[t].tolist()) for t in truth], spec


def test_reindex_changes_the_type_on_purpose(indexed_cli, indexed_collection):
    hnsw = indexed_cli.json("reindex", "--type", "hnsw")
    assert hnsw["index"]["type"] == "hnsw" and hnsw["index"]["vectors"] == 40 and hnsw["recall"] >= 0.95
    loaded = FaissIndex.load(indexed_collection.index_keeper.path(in_session(indexed_collection.models.current_id)))
    assert isinstance(faiss.downcast_index(loaded._index.index), faiss.IndexHNSWFlat)  # loaded: keeps it alive
    ivf = indexed_cli.json("reindex", "--type", "IVF8,Flat")
    assert (ivf["index"]["type"], ivf["index"]["nlist"]) == ("ivf", 8) and ivf["recall"] >= 0.95
    flat = indexed_cli.json("reindex", "--type", "flat")
    assert (flat["index"]["type"], flat["recall"]) == ("flat", 1.0)
    bad = indexed_cli("reindex", "--type", "NoSuchIndex", expect=2)  # bad input; LABELER_INDEX's is exit 1
    assert "unknown index type 'NoSuchIndex'" in bad.output
    assert indexed_cli.json("check")["ok"]


def test_hnsw_removals_rebuild_instead_of_failing(indexed_collection):
    cache = indexed_collection.index_keeper
    in_session(cache.rebuild, "hnsw")
    with indexed_collection.session() as s:
        victim = s.scalar(select(Image).order_by(Image.id))
        victim.status = "missing"
    in_session(cache.catch_up)
    assert victim.id not in in_session(cache.get).ids().tolist() and in_session(cache.get).kind == "hnsw"


def test_check_prints_the_index_type_and_its_recall(indexed_cli):
    out = indexed_cli("check").output
    assert "index: flat (Flat), 40 vectors, recall@10 1.000" in out and out.rstrip().endswith("ok")
    report = indexed_cli.json("check")
    assert report["index"]["stamp"]["count"] == 40 and report["recall"] == 1.0


def test_search_exact_flag(indexed_cli):
    exact = indexed_cli.json("search", "a red object", "-k", "5", "--exact")
    assert exact == indexed_cli.json("search", "a red object", "-k", "5") and len(exact) == 5


def test_an_index_file_from_before_stamps_is_adopted_once(indexed_collection):
    model_id = in_session(indexed_collection.models.current_id)
    path = indexed_collection.index_keeper.path(model_id)
    ids, vecs = in_session(indexed_collection.vectors.read)
    old = faiss.IndexIDMap2(faiss.index_factory(vecs.shape[1], "Flat", faiss.METRIC_INNER_PRODUCT))
    old.add_with_ids(vecs[:30], ids[:30])  # an older labeler's file, 10 vectors behind
    faiss.write_index(old, str(path))
    assert read_stamp(path) is None
    cache = Collection(indexed_collection.config).index_keeper
    assert sorted(in_session(cache.get).ids().tolist()) == ids.tolist()
    assert read_stamp(path)["count"] == 40 and in_session(cache.problems) == []


@pytest.mark.parametrize("spec", ["auto", "ivf", "hnsw", "flat", "IVF4,Flat"])
def test_searches_see_rows_added_by_another_process(indexed_collection, spec, tmp_path):
    in_session(indexed_collection.index_keeper.rebuild, spec)
    server = Collection(indexed_collection.config).index_keeper
    in_session(server.get)
    writer = Collection(indexed_collection.config)
    photos = tmp_path / "more"
    write_good_images(photos, 3, seed=90)
    index_paths(writer, [photos])
    server._checked_at = 0.0  # as if REFRESH_S had passed
    assert len(in_session(server.get)) == 43 and server.last_replay["added"] == 3


def test_an_index_file_of_a_rebuilt_catalog_is_not_replayed(empty_config, tmp_path):
    """A catalog deleted and rebuilt (or restored from a backup) reuses image ids: an index file
    stamped for the old one would answer with the old images' vectors."""
    first = write_good_images(tmp_path / "first", 12, seed=3)
    index_paths(Collection(empty_config), [first[0].parent])
    for suffix in ("", "-wal", "-shm"):
        (empty_config.home / f"catalog.db{suffix}").unlink(missing_ok=True)
    second = write_good_images(tmp_path / "second", 8, seed=7)
    collection = Collection(empty_config)
    index_paths(collection, [second[0].parent])
    assert _in_sync(collection)
    ids, vectors = in_session(collection.vectors.read)
    scores, found = in_session(Collection(empty_config).index_keeper.get).search(vectors[:1], 1)
    assert found[0][0] == ids[0] and scores[0][0] > 0.999  # its own vector, not the old catalog's


def test_the_stamp_moves_past_other_models_changes(indexed_collection, tmp_path):
    """Another model's (or mode's) vectors need no replay: the stamp moves past their changes,
    so a refresh does not scan them again and again."""
    config = indexed_collection.config
    cache = Collection(config).index_keeper
    in_session(cache.get)
    with indexed_collection.session() as s:  # a change that concerns no vector of this model
        s.add(IndexChange(image_id=1, model_id=10_000, op="add"))
        s.commit()
    assert in_session(cache.catch_up) == 0
    assert in_session(cache.get).stamp["change"] == in_session(cache.vectors.latest_change)


@pytest.mark.parametrize("spec", ["flat", "IVF4,Flat", "hnsw"])
def test_a_mapped_index_answers_as_one_read_into_memory(indexed_collection, spec):
    """Opening maps the file instead of copying it (2 GB at 1M vectors of dim 512, for one
    search); a mapped index answers as the file read into memory does, and its first change
    copies it into memory rather than write to the file or abort in FAISS."""
    in_session(indexed_collection.index_keeper.rebuild, spec)
    path = indexed_collection.index_keeper.path(in_session(indexed_collection.models.current_id))
    before = path.read_bytes()
    ids, vecs = in_session(indexed_collection.vectors.read)
    read, mapped = FaissIndex.load(path), FaissIndex.load(path, mapped=True)
    assert mapped.mapped and not read.mapped
    assert mapped.describe() == read.describe() and mapped.stamp == read.stamp
    assert mapped.ids().tolist() == read.ids().tolist()
    for exact in (False, True):
        (read_scores, read_ids), (mapped_scores, mapped_ids) = read.search(vecs, 5, exact), mapped.search(vecs, 5, exact)
        assert mapped_ids.tolist() == read_ids.tolist()
        np.testing.assert_allclose(mapped_scores, read_scores, rtol=0, atol=1e-6)
    new_id = int(ids.max()) + 1000
    mapped.add(np.array([new_id]), vecs[:1])
    assert not mapped.mapped and len(mapped) == len(read) + 1
    _, found = mapped.search(vecs[:1], 2, exact=True)
    assert set(found[0].tolist()) == {int(ids[0]), new_id}
    assert path.read_bytes() == before  # mapped read-only: the change never reached the file


def test_opening_maps_the_file_and_still_replays_newer_changes(indexed_collection, tmp_path):
    config = indexed_collection.config
    assert in_session(Collection(config).index_keeper.get).mapped  # nothing newer: the file stays mapped
    new_ids, vecs = _six_written_without_the_index(indexed_collection, tmp_path, seed=52)

    opened = Collection(config)
    index = in_session(opened.index_keeper.get)
    assert opened.index_keeper.last_replay == {"changes": 6, "added": 6, "removed": 0}
    assert not index.mapped and _in_sync(opened)  # copied into memory, then replayed
    hits = search(opened, "a hammer", k=46, exact=True)
    assert set(new_ids) <= {h.image_id for h in hits}
    _, found = index.search(vecs[:1], 2)
    assert {int(found[0][0]), int(found[0][1])} == {int(in_session(indexed_collection.vectors.ids)[0]), new_ids[0]}


def test_a_truncated_index_file_is_rebuilt_when_opened(indexed_collection):
    config = indexed_collection.config
    path = indexed_collection.index_keeper.path(in_session(indexed_collection.models.current_id))
    for keep in (path.stat().st_size // 2, len(b"LABELER-INDEX-1\n") + 2):
        path.write_bytes(path.read_bytes()[:keep])
        assert "unreadable" in in_session(Collection(config).index_keeper.problems)[0]
        opened = Collection(config)
        assert len(in_session(opened.index_keeper.get)) == 40 and _in_sync(opened)
        assert in_session(Collection(config).index_keeper.problems) == []


def _finds_itself(collection: Collection) -> bool:
    """Every stored vector's nearest image, approximate and exact, is its own."""
    ids, vecs = in_session(collection.vectors.read)
    index = in_session(collection.index_keeper.get)
    return all(found[:, 0].tolist() == ids.tolist() for exact in (False, True)
               for _, found in [index.search(vecs, 1, exact=exact)])


def test_an_ivf_index_names_the_right_images_after_removals(indexed_collection):
    """FAISS's id map renumbers on removal but an IVF's lists do not: wrapped in one, every hit
    after the first removal named another image. An IVF now holds the catalog ids itself."""
    cache = indexed_collection.index_keeper
    in_session(cache.rebuild, "IVF4,Flat")
    in_session(cache.get).nprobe = 4  # every list: the answers are exact, so any wrong id shows
    with indexed_collection.session() as s:
        gone = s.scalars(select(Image).where(Image.status == "ok").order_by(Image.id).limit(2)).all()
        for image in gone:
            image.status = "missing"
    in_session(cache.catch_up)
    assert cache.last_replay["removed"] == 2 and _finds_itself(indexed_collection)
    with indexed_collection.session() as s:
        s.get(Image, gone[0].id).status = "ok"
    in_session(cache.catch_up)
    in_session(cache.save)
    assert _finds_itself(indexed_collection) and _finds_itself(Collection(indexed_collection.config))
    assert in_session(Collection(indexed_collection.config).index_keeper.problems) == []


def _old_ivf_file(collection: Collection, removed: int = 0) -> None:
    """The index file as the older code wrote an IVF: inside an id map, after ``removed`` removals."""
    path = collection.index_keeper.path(in_session(collection.models.current_id))
    meta = json.dumps({"stamp": read_stamp(path), "factory": "IVF4,Flat", "nprobe": 4}).encode()
    ids, vecs = in_session(collection.vectors.read)
    old = faiss.IndexIDMap2(faiss.index_factory(vecs.shape[1], "IVF4,Flat", faiss.METRIC_INNER_PRODUCT))
    old.train(vecs)
    old.add_with_ids(vecs, ids)
    if removed:  # what the catalog then replays: the removed images come back
        old.remove_ids(faiss.IDSelectorBatch(ids[:removed]))
        old.add_with_ids(vecs[:removed], ids[:removed])
    path.write_bytes(MAGIC + struct.pack("<I", len(meta)) + meta + faiss.serialize_index(old).tobytes())


@pytest.mark.parametrize("removed", [0, 2])
def test_an_ivf_file_inside_an_id_map_is_upgraded_once_or_rebuilt(indexed_collection, removed):
    """A file whose ids are still in step is upgraded and saved once; one that a removal put out
    of step (its answers were already wrong) is rebuilt from the catalog."""
    _old_ivf_file(indexed_collection, removed)
    path = indexed_collection.index_keeper.path(in_session(indexed_collection.models.current_id))
    before = read_stamp(path)["build"]
    opened = Collection(indexed_collection.config)
    index = in_session(opened.index_keeper.get)
    assert index.kind == ("ivf" if removed == 0 else "flat") and _in_sync(opened)  # rebuilt: auto at 40
    if index.kind == "ivf":
        index.nprobe = index.nlist
    assert _finds_itself(opened)
    assert (read_stamp(path)["build"] == before) == (removed == 0)  # upgraded, or rebuilt anew
    assert not FaissIndex.load(path).upgraded and in_session(Collection(indexed_collection.config).index_keeper.problems) == []
