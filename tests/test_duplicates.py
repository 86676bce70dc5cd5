"""Duplicate groups (issue 26): real vectors of a real collection, copies written as real files."""

from __future__ import annotations


import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from labeler.collection import Collection
from labeler.config import Config
from labeler.curation import copies
from labeler.curation.duplicates import neighbour_pairs, seeded_groups
from labeler.ingest.run import index_paths
from labeler.store.catalog import DuplicateCalibration, DuplicateGroup, DuplicateMember
from tests.conftest import home_of_first_images
from tests.cli import Cli


def _unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("exact_below", [10**9, 0])  # flat, then IVF
def test_neighbour_pairs_match_a_brute_force_scan(exact_below):
    rng = np.random.default_rng(3)
    centres = _unit(rng.normal(size=(30, 16)))
    vectors = _unit(np.repeat(centres, 5, axis=0) + rng.normal(0, 0.05, (150, 16)))
    a, b, sims, method = neighbour_pairs(vectors, 0.9, exact_below)
    cos = vectors @ vectors.T
    want = {(i, j) for i in range(150) for j in range(i + 1, 150) if cos[i, j] >= 0.9}
    got = set(zip(a.tolist(), b.tolist()))
    assert method.startswith("flat" if exact_below else "ivf")
    assert got <= want and len(got) >= 0.95 * len(want) and want
    assert (a < b).all() and np.allclose(sims, cos[a, b], atol=1e-5)


def test_groups_never_chain_unlike_ends_through_a_middle_image():
    # 0-1 and 1-2 are close, 0-2 are not: 1 seeds the group and holds both; 3-4 is a second group;
    # 5-6 and 6-7 with 4 pairs around 5 make 5 a seed that 7 must not join through 6
    a = np.array([0, 1, 3, 5, 6, 5, 5, 5])
    b = np.array([1, 2, 4, 6, 7, 8, 9, 10])
    s = np.array([0.99, 0.98, 0.97, 0.99, 0.99, 0.99, 0.99, 0.99], np.float32)
    groups = {seed: sorted(m for m, _ in members) for seed, members in seeded_groups(11, a, b, s)}
    assert groups[1] == [0, 2]
    assert groups[3] == [4]
    assert groups[5] == [6, 8, 9, 10] and 7 not in groups[5]
    assert all(7 not in members for members in groups.values())


def test_a_copy_agrees_with_its_picture_more_than_another_picture_does(world):
    pictures = [Image.open(p).convert("RGB") for p in sorted(world.glob("img_*"))[:6]]
    rng = np.random.default_rng(0)
    for img in pictures[:3]:
        own = copies.signatures(img)
        made = copies.make_copies(img, rng)
        assert [kind for kind, _ in made] == list(copies.COPY_KINDS)
        for kind, copy in made:
            assert copy.size != img.size or kind in ("jpeg", "profile")
            score = copies.agreement(own, copies.signatures(copy))
            others = [copies.agreement(copies.signatures(o), copies.signatures(copy)) for o in pictures if o is not img]
            assert score > 0.9 and score > max(others), (kind, score, others)


def _thumbnail_look(img: Image.Image) -> copies.Look:
    """``img``'s look as the catalog's stored thumbnail shows it."""
    import io

    from labeler.encoding.images import thumbnail_bytes

    return copies.look(Image.open(io.BytesIO(thumbnail_bytes(img, 256))).convert("RGB"))


@pytest.fixture(scope="module")
def lookalikes():
    """Generated pictures (seed 31, 128 px) and their looks; pairs of distinct ones that share
    concept or colour, context and size: a disc of one colour on one background, at nearby places."""
    from labeler.demo_world import render

    rendered = [render(31, i, 128) for i in range(100)]
    pictures = [img for img, _, _ in rendered]
    looks = [_thumbnail_look(img) for img in pictures]
    alike = [(i, j) for i in range(len(rendered)) for j in range(i + 1, len(rendered))
             if all(rendered[i][1][k] == rendered[j][1][k] for k in ("color", "context", "size"))]
    return pictures, looks, alike


def test_the_aligned_check_passes_every_kind_of_copy_and_fails_distinct_lookalikes(lookalikes):
    from labeler.curation.duplicates import choose_thresholds, look_score

    pictures, looks, alike = lookalikes
    assert len(alike) >= 15
    rng = np.random.default_rng(5)
    measured = []  # (kind, residual, aligned colour, coarse agreement, coarse colour)
    for img, own in zip(pictures[:16], looks[:16]):
        for kind, copy in copies.make_copies(img, rng):
            other = _thumbnail_look(copy)
            found = copies.aligned(own, other, img.size, copy.size)
            assert found.window is not None and found.residual < 0.1, (kind, found)
            # the window found is the one the copy shows: whole for a re-encode or a profile change
            if kind in ("jpeg", "profile", "resize"):
                assert np.allclose(found.window, (0, 1, 0, 1), atol=0.02), (kind, found.window)
            else:
                assert found.window[1] <= (copy.width + 1) / img.width + 0.01
            agree, dist = copies.coarse(own.grey[None], other.grey[None], own.colour[None], other.colour[None])
            measured.append((kind, found.residual, found.colour, agree[0], dist[0]))
    kinds = np.array([m[0] for m in measured])
    residual, colour, agree, dist = (np.array([m[k] for m in measured]) for k in (1, 2, 3, 4))
    n = len(measured)
    limits = choose_thresholds(np.ones(n), np.ones(5), agree, dist, residual, colour, kinds)
    assert limits["residual"] > 0 and limits["aligned_colour"] > 0 and limits["look"] > 0

    passed = []
    for i, j in alike:
        found = copies.aligned(looks[i], looks[j], pictures[i].size, pictures[j].size)
        if (found.residual <= limits["residual"] and found.colour <= limits["aligned_colour"]
                and look_score(found.residual, found.colour, limits["residual"],
                               limits["aligned_colour"]) <= limits["look"]):
            passed.append((i, j, found))
    assert not passed, passed
    # and the strongest profile change of one of them stays close to its own picture, not the other's
    i, j = alike[0]
    changed = copies.profile_change(pictures[i], "adobe-rgb", inverse=True)
    own = copies.aligned(looks[i], _thumbnail_look(changed), pictures[i].size, changed.size)
    other = copies.aligned(looks[j], _thumbnail_look(changed), pictures[j].size, changed.size)
    assert own.residual < 0.25 * other.residual and limits["residual"] < other.residual


def test_a_copy_can_only_be_a_window_its_pixel_size_allows():
    from labeler.demo_world import render

    img = render(31, 3, 128)[0]
    look = _thumbnail_look(img)
    # cut to 70 % of its width: more than a slight crop, so no window of the original fits it
    narrow = img.crop((0, 0, 90, 128))
    assert copies.aligned(look, _thumbnail_look(narrow), img.size, narrow.size) == copies.NOT_ALIGNED
    # an enlarged copy is not a copy either way round; the same picture at one size is compared whole
    same = copies.aligned(look, look, img.size, img.size)
    assert same.residual < 1e-3 and same.colour < 1e-3 and same.window == (0, 1, 0, 1)
    crop = img.crop((5, 3, 123, 125))
    found = copies.aligned(_thumbnail_look(crop), look, crop.size, img.size)  # either order
    assert np.allclose(found.window, (5 / 128, 118 / 128, 3 / 128, 122 / 128), atol=1.5 / 128), found.window


@pytest.fixture
def copied_home(indexed_collection, world, tmp_path):
    """The indexed world plus four copies (one of each kind) of four of its images, indexed."""
    folder = tmp_path / "copies"
    folder.mkdir()
    rng = np.random.default_rng(11)
    originals = sorted(world.glob("img_*"))[5:9]
    truth = {}
    for n, (path, kind) in enumerate(zip(originals, copies.COPY_KINDS)):
        copy = copies.make_copy(Image.open(path), kind, rng)
        target = folder / f"copy_{n}.png"
        copy.save(target)
        truth[str(target)] = str(path)
    index_paths(indexed_collection, [folder])
    return indexed_collection, truth


def test_near_groups_hold_each_copy_with_its_original(copied_home, model_spec):
    collection, truth = copied_home
    cli = Cli(collection.config.home, model_spec)
    report = cli.json("duplicates", "--level", "near")
    assert set(report) >= {"level", "groups", "images_in_groups", "calibration", "threshold"}
    assert report["level"] == "near"
    group_of = {}
    for group in report["groups"]:
        assert set(group) >= {"id", "images", "keep"}
        assert group["keep"] in [img["image_id"] for img in group["images"]]
        assert len(group["images"]) >= 2
        for img in group["images"]:
            assert set(img) >= {"image_id", "path", "similarity"}
            group_of[img["path"]] = group["id"]
    assert report["images_in_groups"] == len(group_of)
    for copy, original in truth.items():
        assert copy in group_of and group_of[copy] == group_of.get(original), (copy, original)
    calibration = report["calibration"]
    assert calibration["sample"] >= 10 and 0 < calibration["near"] <= 1 and 0 < calibration["scene"] <= 1
    assert 0 < calibration["pixels"] <= 1 and calibration["colour"] > 0 and calibration["look"] > 0
    assert calibration["residual"] > 0 and calibration["aligned_colour"] > 0
    assert set(calibration["copy_residual"]) == set(copies.COPY_KINDS)
    assert calibration["nearest_thumbnail"]["residual"]["count"] > 0
    assert set(calibration["copy_cosine"]) == set(copies.COPY_KINDS)
    # the keep suggestion: the largest picture of its group (a resized copy never wins)
    for group in report["groups"]:
        pixels = {img["image_id"]: img["width"] * img["height"] for img in group["images"]}
        assert pixels[group["keep"]] == max(pixels.values())

    with collection.session() as s:  # stored: groups, members, the calibration
        assert s.scalar(select(func.count()).select_from(DuplicateGroup)) == len(report["groups"])
        assert s.scalar(select(func.count()).select_from(DuplicateMember)) == report["images_in_groups"]
        assert s.scalar(select(func.count()).select_from(DuplicateCalibration)) == 1
    again = cli.json("duplicates")  # the stored calibration is reused, the groups replaced
    assert again["calibration"] == calibration and again["images_in_groups"] == report["images_in_groups"]
    with collection.session() as s:
        assert s.scalar(select(func.count()).select_from(DuplicateCalibration)) == 1
        assert s.scalar(select(func.count()).select_from(DuplicateGroup)) == len(again["groups"])


def test_each_level_has_its_own_threshold_and_groups(copied_home, model_spec):
    collection, truth = copied_home
    cli = Cli(collection.config.home, model_spec)
    near = cli.json("duplicates", "--level", "near")
    scene = cli.json("duplicates", "--level", "scene")
    exact = cli.json("duplicates", "--level", "exact")
    assert scene["threshold"] == near["calibration"]["scene"] and near["threshold"] == near["calibration"]["near"]
    assert exact["threshold"] >= 0.9999 > max(near["threshold"], scene["threshold"]) and exact["calibration"] is None
    assert scene["verification"] is None and near["verification"]["checked"] > 0  # the pixel checks: near only
    assert scene["images_in_groups"] >= 2
    with collection.session() as s:  # each level keeps its own groups
        levels = dict(s.execute(select(DuplicateGroup.level, func.count()).group_by(DuplicateGroup.level)).all())
    assert levels.get("near", 0) == len(near["groups"]) and levels.get("scene", 0) == len(scene["groups"])


def test_bad_input_is_one_clear_line(indexed_cli):
    result = indexed_cli("duplicates", "--level", "blurry", expect=2)
    assert result.stderr.strip() == "error: unknown level 'blurry': use one of exact, near, scene"
    result = indexed_cli("duplicates", "--threshold", "1.5", expect=2)
    assert result.stderr.strip().startswith("error: --threshold must be a cosine in (0, 1]")
    result = indexed_cli("duplicates", "--threshold", "nan", expect=2)
    assert "--threshold" in result.stderr and "Traceback" not in result.output


def test_a_tiny_collection_has_no_groups_and_says_why(tmp_path, world, model_spec):
    home = home_of_first_images(world, tmp_path, 3, model_spec)
    report = Cli(home, model_spec).json("duplicates")
    assert report["groups"] == [] and report["images_in_groups"] == 0 and "fewer than 10" in report["note"]


def test_marked_duplicates_leave_the_queues_label_and_export_until_undone(copied_home, model_spec, tmp_path):
    import json

    from labeler.review.decisions import list_labels
    from labeler.store.catalog import DuplicateMark, DuplicateMarkEvent, Label

    collection, truth = copied_home
    cli = Cli(collection.config.home, model_spec)
    report = cli.json("duplicates")
    group = next(g for g in report["groups"] if any(img["path"] in truth for img in g["images"]))
    members = [img["image_id"] for img in group["images"]]
    keep = group["keep"]
    others = [i for i in members if i != keep]
    cli.json("label", "--prompt-set", "workshop", "--group", "color")

    def queued() -> set[int]:
        with collection.session() as s:
            labels, _ = list_labels(s, group="color", status="proposed", limit=1000)
            return {label.image_id for label in labels}

    assert set(members) <= queued()
    marked = cli.json("mark-duplicates", str(group["id"]))
    assert marked == {"group": group["id"], "keep": keep, "marked": sorted(others)}
    assert keep in queued() and not set(others) & queued()
    listed = cli.json("duplicates", "--level", "near")  # a rerun keeps the marks (they are the reviewer's)
    assert listed["images_in_groups"] == report["images_in_groups"]

    # label skips them: a rerun relabels (the marks moved its stamp) and proposes nothing for them
    with collection.session() as s:
        s.query(Label).filter(Label.image_id.in_(others)).delete(synchronize_session=False)
    relabel = cli.json("label", "--prompt-set", "workshop", "--group", "color")
    assert relabel["skipped_duplicates"] == len(others)
    with collection.session() as s:
        assert s.query(Label).filter(Label.image_id.in_(others)).count() == 0

    out = tmp_path / "all.jsonl"
    plain = cli.json("export", "--format", "jsonl", str(out))
    rows = {row["image_id"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert plain["duplicates"] == 0  # their labels were deleted above: nothing of theirs to list
    cli.json("mark-duplicates", str(group["id"]), "--undo")
    cli.json("label", "--prompt-set", "workshop", "--group", "color")
    cli.json("mark-duplicates", str(group["id"]), "--keep", str(others[0]))  # keep another one now
    plain = cli.json("export", "--format", "jsonl", "--force", str(out))
    rows = {row["image_id"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert plain["duplicates"] == len(members) - 1
    assert rows[keep]["duplicate_of"] == others[0] and rows[others[0]]["duplicate_of"] is None
    csv_out = tmp_path / "all.csv"
    cli.json("export", "--format", "csv", str(csv_out))
    assert csv_out.read_text().splitlines()[0].endswith("image:flags,image:duplicate_of")
    kept_out = tmp_path / "kept.jsonl"
    excluded = cli.json("export", "--format", "jsonl", "--exclude-duplicates", str(kept_out))
    kept_ids = {json.loads(line)["image_id"] for line in kept_out.read_text().splitlines()}
    assert others[0] in kept_ids and keep not in kept_ids and excluded["excluded_duplicates"] == len(members) - 1

    undone = cli.json("mark-duplicates", str(group["id"]), "--undo")
    assert sorted(undone["unmarked"]) == sorted(i for i in members if i != others[0])
    assert set(members) <= queued()
    with collection.session() as s:  # every mark and unmark is an event; marks are kept, undone
        actions = [e.action for e in s.query(DuplicateMarkEvent).order_by(DuplicateMarkEvent.id)]
        assert actions.count("mark") == 2 * len(others) and actions.count("unmark") == 2 * len(others)
        assert s.query(DuplicateMark).filter(DuplicateMark.undone_at.is_(None)).count() == 0
    for path in [img["path"] for img in group["images"]]:  # nothing deleted from disk
        assert path and __import__("os").path.exists(path)

    bad = cli("mark-duplicates", str(group["id"]), "--keep", "999999", expect=2)
    assert bad.stderr.startswith(f"error: image 999999 is not in duplicate group {group['id']}")
    assert cli("mark-duplicates", "424242", expect=2).stderr.strip() == "error: no duplicate group with id 424242"



@pytest.mark.slow
def test_two_runs_at_once_never_share_a_group_id_on_postgresql(world, tmp_path, model_spec):
    """Each run gives its groups their ids in one executemany; on PostgreSQL two runs at once read
    the same largest id unless the second waits (SQLite's one write lock serialises them anyway)."""
    import threading

    from labeler.curation.duplicates import find_duplicates
    from tests import postgres

    reason = postgres.available()
    if reason:
        pytest.skip(reason)
    with postgres.postgres_server() as url:
        config = Config(home=tmp_path / "home", database_url=url, model=model_spec)
        index_paths(Collection(config), [world])
        reports, errors = {}, []
        start = threading.Barrier(2)

        def run(level: str, threshold: float) -> None:
            own = Collection(config)
            start.wait()
            try:
                with own.session() as s:
                    reports[level] = find_duplicates(s, own, level, threshold=threshold)
            except Exception as exc:  # noqa: BLE001 - the test reports any failure of either run
                errors.append(repr(exc)[:300])

        for _ in range(3):
            threads = [threading.Thread(target=run, args=args) for args in (("near", 0.95), ("scene", 0.9))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert not errors, errors
        with Collection(config).session() as s:
            stored = dict(s.execute(select(DuplicateGroup.level, func.count()).group_by(DuplicateGroup.level)).all())
            ids = list(s.scalars(select(DuplicateGroup.id)))
        assert len(ids) == len(set(ids)) and stored.get("scene", 0) == len(reports["scene"]["groups"]) > 0
        assert stored.get("near", 0) == len(reports["near"]["groups"]) > 0
