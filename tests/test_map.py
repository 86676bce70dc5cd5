"""The map of the collection (issue 26, part 3): real vectors of a real collection, a real PNG."""

from __future__ import annotations

import warnings

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


def test_colours_are_each_images_own_label_read_from_the_index(indexed_collection):
    from labeler.core.prompts import load_prompt_set
    from labeler.labeling.bulk import label_collection
    from labeler.store.catalog import Label

    collection = indexed_collection
    label_collection(collection, load_prompt_set("workshop"), groups=["concept", "material"])
    with collection.session() as s:
        maps.update_map(s, collection)
        first = s.scalars(select(Label).where(Label.group == "concept").order_by(Label.image_id)).first()
        first.status, first.value = "corrected", None  # a reviewer's "none of these"
        s.scalars(select(Label).where(Label.group == "material")).first().confidence = None
    with collection.session() as s:
        points = maps.read_points(s, collection.models.require_id(s))
        labels = {(label.group, label.image_id): label for label in s.scalars(select(Label))}
        for colour, group, expected in (
                ("concept", "concept", lambda label: label.value or "(none of these)"),
                ("status", "material", lambda label: label.status),
                ("confidence", "concept", lambda label: "confidence {0:.1f}–{1:.1f}".format(
                    *(np.array([0, 1]) + min(4, int(label.confidence * 5))) / 5))):
            values, legend = maps.colour_values(s, points.ids, colour, group)
            names = {entry["value"]: entry["name"] for entry in legend}
            assert len(legend) < len(maps.PALETTE)  # each name its own colour: the check below is exact
            assert all(names[v] == expected(labels[group, i]) for i, v in zip(points.ids.tolist(), values.tolist()))
        values, _ = maps.colour_values(s, points.ids, "confidence", "material")
        assert (values == -1).sum() == 1  # the label without a confidence has no colour
        # the most common value first in the legend, as a legend of a map reads
        values, legend = maps.colour_values(s, points.ids, "concept", "concept")
        counts = np.bincount(values[values >= 0])
        assert counts[0] == counts.max() and len(legend) >= 2
        with pytest.raises(layout.LayoutError, match="colour must be one of"):
            maps.colour_values(s, points.ids, "no-such-group", None)


def test_the_places_kept_beside_the_index_follow_the_catalog(indexed_collection):
    from labeler.store.catalog import Image as ImageRow

    collection = indexed_collection
    with collection.session() as s:
        maps.update_map(s, collection)
        model_id = collection.models.require_id(s)
    kept = collection.config.index_dir / f"map-{model_id}.npz"
    assert kept.is_file()  # `map` leaves it for the web's first read
    with collection.session() as s:
        truth = maps.read_points(s, model_id)  # the catalog's rows alone
        held = maps.read_points(s, model_id, collection.config.index_dir)
    assert np.array_equal(truth.ids, held.ids) and np.array_equal(truth.xy, held.xy)
    # the file is read: a place moved in it alone shows, while the catalog's stamp is unchanged
    with np.load(kept) as data:
        key, ids, xy = data["key"], data["ids"], data["xy"].copy()
    xy[0] = (123.0, 456.0)
    np.savez(kept, key=key, ids=ids, xy=xy)
    with collection.session() as s:
        assert maps.read_points(s, model_id, collection.config.index_dir).xy[0].tolist() == [123.0, 456.0]
    # an image gone from the catalog leaves the map at once; one missing on disk too
    with collection.session() as s:
        s.delete(s.get(ImageRow, int(truth.ids[0])))
        s.get(ImageRow, int(truth.ids[1])).status = "missing"
    with collection.session() as s:
        after = maps.read_points(s, model_id, collection.config.index_dir)
    assert after.ids.tolist() == truth.ids[2:].tolist() and np.array_equal(after.xy, truth.xy[2:])
    # a torn file is passed over with a warning, and written again from the catalog
    kept.write_bytes(b"PK\x03\x04 torn")
    with collection.session() as s:
        again = maps.read_points(s, model_id, collection.config.index_dir)
    assert again.ids.tolist() == after.ids.tolist()
    with np.load(kept) as data:
        assert data["ids"].tolist() == truth.ids[1:].tolist()  # the file keeps places; status is read each time


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


def test_migration_0022_puts_image_id_last_in_the_colour_indexes_and_goes_back(indexed_collection):
    """The migrated catalog's label indexes are the model's, column for column, down and up again."""
    from alembic import command
    from sqlalchemy import inspect

    from labeler.store import db
    from labeler.store.catalog import Label

    config = indexed_collection.config

    def columns() -> dict[str, list[str]]:
        db.dispose_engines()
        with warnings.catch_warnings():  # the spot-check index is on an expression: not one of these
            warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index")
            return {ix["name"]: ix["column_names"] for ix in inspect(db.get_engine(config)).get_indexes("labels")}

    model = {ix.name: [c.name for c in ix.columns] for ix in Label.__table__.indexes if ix.name in columns()}
    assert columns() == {**columns(), **model} and len(model) >= 7
    assert columns()["ix_labels_group_value"] == ["group", "value", "image_id"]
    command.downgrade(db.alembic_config(config), "0021")
    assert columns()["ix_labels_group_value"] == ["group", "value"]
    assert columns()["ix_labels_queue_suspect"] == ["group", "status", "suspect_score", "id"]
    db.upgrade(config)
    assert {name: columns()[name] for name in model} == model
