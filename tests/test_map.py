"""The map of the collection (issue 26, part 3): real vectors of a real collection, a real PNG."""

from __future__ import annotations


import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from labeler.collection import Collection
from labeler.config import Config
from labeler.curation import layout, maps
from labeler.ingest.run import index_paths
from labeler.store.catalog import MapPosition
from tests.conftest import home_of_first_images


def _vectors(collection: Collection) -> tuple[np.ndarray, np.ndarray]:
    with collection.session() as s:
        return collection.vectors.read(s)


def test_fit_is_deterministic_for_a_seed_and_keeps_neighbours_near(indexed_collection):
    ids, vecs = _vectors(indexed_collection)
    first = layout.fit(vecs, seed=3)
    assert first.shape == (len(ids), 2) and np.isfinite(first).all()
    assert np.array_equal(first, layout.fit(vecs, seed=3))
    # the seed draws the sample a large collection is fitted on
    assert np.array_equal(layout.sample_rows(1000, 50, 1), layout.sample_rows(1000, 50, 1))
    assert not np.array_equal(layout.sample_rows(1000, 50, 1), layout.sample_rows(1000, 50, 2))
    assert np.array_equal(layout.sample_rows(40, 50, 1), np.arange(40))
    # an image's nearest vector lies nearer on the map than a typical other image
    cos = vecs @ vecs.T
    np.fill_diagonal(cos, -2)
    nearest = cos.argmax(axis=1)
    dist = np.linalg.norm(first[:, None] - first[None], axis=2)
    assert np.median(dist[np.arange(len(ids)), nearest]) < np.median(dist)


def test_placing_new_vectors_never_moves_the_placed_ones(indexed_collection):
    ids, vecs = _vectors(indexed_collection)
    fitted = layout.fit(vecs[:20], seed=0)
    alone = layout.place(vecs[:20], fitted, vecs[20:25])
    together = layout.place(vecs[:20], fitted, vecs[20:])
    assert np.allclose(alone, together[:5])
    # a vector that is an anchor's own lands on (or right beside) that anchor
    own = layout.place(vecs[:20], fitted, vecs[:20], k=1)
    assert np.allclose(own, fitted, atol=1e-5)


def test_too_few_vectors_and_bad_boxes_are_refused():
    with pytest.raises(layout.LayoutError, match="at least 3"):
        layout.fit(np.eye(2, 8, dtype=np.float32))
    for bad in ([0.0, 0.0, 1.0], [0.0, float("nan"), 1.0, 1.0], [0.0, 0.0, float("inf"), 1.0], [1.0, 1.0, 1.0, 2.0]):
        with pytest.raises(layout.LayoutError, match="bbox"):
            layout.check_bbox(bad)
    assert layout.check_bbox([1.0, 2.0, 0.0, 0.0]) == (0.0, 0.0, 1.0, 2.0)


def test_lasso_and_bins():
    points = np.array([[0.1, 0.1], [0.9, 0.9], [0.5, 0.2], [0.2, 0.8]], np.float32)
    triangle = np.array([[0, 0], [1, 0], [0, 1]], np.float32)
    assert layout.in_polygon(points, triangle).tolist() == [True, False, True, False]
    counts, top = layout.bins(points, (0, 0, 1, 1), 2, np.array([3, -1, 1, 1]))
    assert counts.tolist() == [[1, 1], [1, 1]] and top.tolist() == [[3, 1], [1, -1]]


def test_map_command_draws_a_png_and_places_new_images_without_moving_old_ones(indexed_cli, indexed_collection,
                                                                                world, tmp_path):
    out = tmp_path / "map.png"
    report = indexed_cli.json("map", "--out", out, "--colour", "duplicates")
    assert report["fitted"] and report["images"] == report["anchors"] > 0
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.width > picture.height
        assert len(set(picture.convert("RGB").get_flattened_data())) > 3  # points and a legend, not a blank page
    with indexed_collection.session() as s:
        before = dict((i, (x, y)) for i, x, y in s.execute(select(MapPosition.image_id, MapPosition.x, MapPosition.y)))
    # new images: copies of the world's files, altered so they are new contents
    extra = tmp_path / "extra"
    extra.mkdir()
    for k, path in enumerate(sorted(world.glob("*.png"))[:5]):
        with Image.open(path) as img:
            img.convert("RGB").rotate(90 * (k % 3 + 1)).save(extra / f"new{k}.png")
    index_paths(indexed_collection, [extra])
    again = indexed_cli.json("map")
    assert not again["fitted"] and again["placed"] == 5 and again["images"] == len(before) + 5
    with indexed_collection.session() as s:
        after = dict((i, (x, y)) for i, x, y in s.execute(select(MapPosition.image_id, MapPosition.x, MapPosition.y)))
    assert all(after[i] == xy for i, xy in before.items())
    assert indexed_cli.json("map")["placed"] == 0
    # a refit may move everything, but keeps one row per image
    refit = indexed_cli.json("map", "--refit", "--seed", "5")
    assert refit["fitted"] and refit["images"] == len(before) + 5
    with indexed_collection.session() as s:
        assert s.scalar(select(func.count()).select_from(MapPosition)) == len(before) + 5


def test_map_refuses_fewer_than_three_vectors_and_an_unknown_colour(indexed_collection, world, tmp_path, model_spec):
    from tests.cli import Cli

    home = home_of_first_images(world, tmp_path, 2, model_spec)
    cli = Cli(home, model_spec)
    result = cli("map", expect=2)
    assert "at least 3" in result.stderr and "Traceback" not in result.output and len(result.stderr.splitlines()) == 1
    bad = Cli(indexed_collection.config.home, model_spec)("map", "--out", tmp_path / "x.png", "--colour", "nope",
                                                          expect=2)
    assert "colour must be one of" in bad.stderr


def test_colour_values_by_a_groups_labels(indexed_collection):
    ids, vecs = _vectors(indexed_collection)
    values, legend = maps._categories(ids, ids[::2], ["a", "b"] * (len(ids[::2]) // 2) + ["a"] * (len(ids[::2]) % 2),
                                      ["a", "b"])
    assert values[::2].tolist()[:2] == [0, 1] and (values[1::2] == -1).all()
    assert [e["name"] for e in legend] == ["a", "b"]


def test_without_the_map_extra_map_names_it_in_one_line(indexed_cli, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openTSNE", None)  # as if labeler[map] were not installed
    result = indexed_cli("map", expect=2)
    assert "labeler[map]" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_map_runs_on_postgresql(tmp_path, model_spec):
    from labeler.core.prompts import load_prompt_set
    from labeler.labeling.bulk import label_collection
    from labeler.review import decisions
    from tests import postgres
    from tests.imagegen import write_good_images

    reason = postgres.available()
    if reason:
        pytest.skip(reason)
    with postgres.postgres_server() as url:
        collection = Collection(Config(home=tmp_path / "home", database_url=url, model=model_spec))
        photos = tmp_path / "photos"
        write_good_images(photos, 12)
        index_paths(collection, [photos])
        label_collection(collection, load_prompt_set("workshop"), groups=["concept"])
        with collection.session() as s:
            report = maps.update_map(s, collection)
        assert report["fitted"] and report["images"] == 12
        with collection.session() as s:
            points = maps.read_points(s, collection.models.require_id(s))
            values, legend = maps.colour_values(s, points.ids, "concept", "concept")
            assert len(points.ids) == 12 and (values >= 0).all() and legend
            chosen = maps.selected_ids(points, bbox=(-100.0, -100.0, 0.0, 100.0))
            selection = maps.save_selection(s, chosen, None).id
        with collection.session() as s:
            page = decisions.queue_page(s, "concept", status=None, sort="id", selection=selection)
        assert sorted(label.image_id for label in page.labels) == sorted(chosen.tolist())
        assert not (collection.config.home / "catalog.db").exists()
