"""The workshop world generator: deterministic, valid truth, image i independent of count."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from labeler.core.prompts import load_prompt_set

from labeler import demo_world as world
from labeler.commands.world import demo_images


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_same_seed_gives_identical_bytes_and_truth(tmp_path: Path) -> None:
    world.generate_world(tmp_path / "a", 40, seed=7)
    world.generate_world(tmp_path / "b", 40, seed=7)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_different_seed_gives_a_different_world(tmp_path: Path) -> None:
    world.generate_world(tmp_path / "a", 20, seed=7)
    world.generate_world(tmp_path / "b", 20, seed=8)
    a, b = world.read_truth(tmp_path / "a" / "truth.csv"), world.read_truth(tmp_path / "b" / "truth.csv")
    assert [r["caption"] for r in a] != [r["caption"] for r in b]
    images_a = {n: d for n, d in _files(tmp_path / "a").items() if n != "truth.csv"}
    images_b = {n: d for n, d in _files(tmp_path / "b").items() if n != "truth.csv"}
    assert not set(images_a.values()) & set(images_b.values())


def test_truth_columns_values_and_count(tmp_path: Path) -> None:
    truth = world.generate_world(tmp_path, 120, seed=3)
    with truth.open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == world.TRUTH_COLUMNS
        rows = list(reader)
    assert len(rows) == 120
    images = sorted(p.name for p in tmp_path.iterdir() if p.name != "truth.csv")
    assert images == sorted(r["file"] for r in rows)
    vocab = {"concept": world.CONCEPTS, "color": world.COLORS, "material": world.MATERIALS,
             "handle": world.HANDLES, "size": world.SIZES, "context": world.CONTEXTS}
    for row in rows:
        for column, allowed in vocab.items():
            assert row[column] in allowed, (column, row)
        assert row["caption"] == world.describe(row)
        assert row["function"] == world.FUNCTION_OF[row["concept"]]
        assert (row["handle"] == "none") == (row["concept"] in ("mug", "apple", "ball", "book"))
        with Image.open(tmp_path / row["file"]) as im:
            assert im.size == (128, 128) and im.mode == "RGB"
    # 120 draws cover most of every vocabulary; a stuck sampler would not.
    assert len({r["concept"] for r in rows}) >= 8
    # The function group of the shipped prompt set has exactly the values the world draws.
    assert set(load_prompt_set("workshop").groups["function"].option_names) == set(world.FUNCTION_OF.values())
    assert {r["context"] for r in rows} == set(world.CONTEXTS)
    assert {r["file"].rsplit(".", 1)[1] for r in rows} == {"png", "jpg"}


def test_image_i_does_not_depend_on_count(tmp_path: Path) -> None:
    world.generate_world(tmp_path / "short", 5, seed=11)
    world.generate_world(tmp_path / "long", 30, seed=11)
    short, long_ = _files(tmp_path / "short"), _files(tmp_path / "long")
    for name, data in short.items():
        if name != "truth.csv":
            assert long_[name] == data
    assert world.read_truth(tmp_path / "long" / "truth.csv")[:5] == world.read_truth(tmp_path / "short" / "truth.csv")


def test_progress_reports_up_to_count(tmp_path: Path) -> None:
    seen: list[int] = []
    world.generate_world(tmp_path, 60, seed=1, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 60


def test_attributes_are_visible_in_pixels() -> None:
    """Colour and context must show up in the image, or nothing can learn them."""
    reds, blues = [], []
    for i in range(300):
        image, row, _ = world.render(5, i)
        px = np.asarray(image, np.float32)
        centre = px[40:88, 40:88].reshape(-1, 3)
        if row["size"] == "large" and row["context"] == "plain":
            (reds if row["color"] == "red" else blues if row["color"] == "blue" else []).append(centre.mean(0))
    assert reds and blues
    assert np.mean([c[0] - c[2] for c in reds]) > np.mean([c[0] - c[2] for c in blues]) + 30


def test_captions_cover_every_form_and_assert_true_attributes() -> None:
    rng = np.random.default_rng(0)
    row = world.render(2, 0)[1]
    specs = world.caption_specs(row, rng)
    assert len(specs) >= 10
    for text, asserted in specs:
        assert text and all(row[k] == v for k, v in asserted.items())
    assert world.captions_for(row, np.random.default_rng(0)) == [t for t, _ in specs]


def test_demo_images_command_json(tmp_path: Path) -> None:
    result = CliRunner().invoke(demo_images, [str(tmp_path / "w"), "--count", "12", "--seed", "4", "--json"])
    assert result.exit_code == 0, result.output
    import json

    data = json.loads(result.output)
    assert data == {"count": 12, "out": str(tmp_path / "w"), "truth": str(tmp_path / "w" / "truth.csv")}
    assert len(world.read_truth(Path(data["truth"]))) == 12
