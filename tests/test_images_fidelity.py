"""Every image read right: wide samples by their real range, honest reasons, whole panoramas.

Through the real CLI with the real labeler-tiny model: the copies of one picture in 16-bit, 32-bit
and float files must be found and labeled as the 8-bit picture is, not as a blank one.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labeler.encoding.images import BadImage, decode
from labeler.demo_world import render
from tests.imagegen import picture, tiff_bytes


def grey_photo() -> np.ndarray:
    """A generated workshop photo (a book on a pegboard) in 8-bit grey, [128, 128] uint8."""
    img, _, _ = render(7, 0, size=128)
    return np.asarray(img.convert("L"))


def write_grey_copies(folder: Path) -> dict[str, Path]:
    """The same grey picture as 8-bit PNG, 16-bit PNG and TIFF, 32-bit integer TIFF and float TIFF."""
    folder.mkdir(parents=True, exist_ok=True)
    grey = grey_photo()
    copies = {
        "8-bit png": ("grey8.png", Image.fromarray(grey), "PNG"),
        "16-bit png": ("grey16.png", Image.fromarray(grey.astype(np.uint16) * 257), "PNG"),
        "16-bit tiff": ("grey16.tif", Image.fromarray(grey.astype(np.uint16) * 257), "TIFF"),
        "32-bit tiff": ("grey32.tif", Image.fromarray(grey.astype(np.int32) << 23), "TIFF"),
        "float tiff": ("greyf.tif", Image.fromarray(grey.astype(np.float32) / 255), "TIFF"),
    }
    paths = {}
    for kind, (name, img, fmt) in copies.items():
        img.save(folder / name, fmt)
        paths[kind] = folder / name
    assert Image.open(paths["16-bit png"]).mode == "I;16" and Image.open(paths["float tiff"]).mode == "F"
    assert Image.open(paths["32-bit tiff"]).mode == "I"
    return paths


def write_decoys(folder: Path) -> None:
    """What the old decoding made of wide files (solid white, solid black), and other pictures."""
    Image.new("RGB", (128, 128), (255, 255, 255)).save(folder / "white.png")
    Image.new("RGB", (128, 128), (0, 0, 0)).save(folder / "black.png")
    for index in range(1, 7):
        render(7, index, size=128)[0].save(folder / f"other_{index}.png")


def thumbnail_of(cli, path: Path) -> Image.Image:
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return Image.open(cli.home / "thumbnails" / sha[:2] / f"{sha}.jpg")


def test_wide_copies_are_each_others_nearest_and_labeled_alike(empty_cli, tmp_path):
    photos = tmp_path / "photos"
    copies = write_grey_copies(photos)
    write_decoys(photos)
    report = empty_cli.json("index", photos)
    assert report["failed"] == 0 and report["embedded"] == len(copies) + 8

    for kind, path in copies.items():
        hits = empty_cli.json("similar", path, "-k", len(copies) - 1)
        others = {str(p) for k, p in copies.items() if k != kind}
        assert {h["path"] for h in hits} == others, (kind, hits)
        assert min(h["score"] for h in hits) >= 0.98, (kind, hits)

    empty_cli.json("label", "--prompt-set", "workshop")
    empty_cli("export", "--format", "jsonl", tmp_path / "labels.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    labels = {line["path"]: {g: label["value"] for g, label in line["labels"].items()} for line in lines}
    reference = labels[str(copies["8-bit png"])]
    assert reference and len(reference) > 1
    for kind, path in copies.items():
        assert labels[str(path)] == reference, kind


def test_16bit_thumbnail_shows_the_picture(empty_cli, tmp_path):
    photos = tmp_path / "photos"
    copies = write_grey_copies(photos)
    empty_cli.json("index", photos)
    eight = np.asarray(thumbnail_of(empty_cli, copies["8-bit png"]).convert("L"), dtype=float)
    assert eight.std() > 20  # the reference itself is a picture, not a flat field
    for kind in ("16-bit png", "16-bit tiff", "32-bit tiff", "float tiff"):
        thumb = np.asarray(thumbnail_of(empty_cli, copies[kind]).convert("L"), dtype=float)
        assert thumb.shape == eight.shape
        assert abs(thumb.mean() - eight.mean()) < 2 and abs(thumb.std() - eight.std()) < 2, kind
        assert np.abs(thumb - eight).mean() < 2, kind


def test_decoding_scales_by_the_declared_range():
    grey = grey_photo()

    def decoded(img: Image.Image, fmt: str) -> np.ndarray:
        out = io.BytesIO()
        img.save(out, fmt)
        return np.asarray(decode(out.getvalue(), 10**8).image, dtype=int)

    big_endian = Image.fromarray((grey.astype(np.uint16) * 257).astype(">u2"))
    assert big_endian.mode == "I;16B"
    assert np.array_equal(decoded(big_endian, "TIFF")[..., 0], grey)
    # Floats outside [0, 1] are stretched from their own min-max, so the picture still shows.
    wide = decoded(Image.fromarray(grey.astype(np.float32) * 40.0 - 3000.0), "TIFF")[..., 0]
    stretched = (grey - grey.min()) * 255.0 / (grey.max() - grey.min())
    assert np.abs(wide - stretched).max() <= 1


def test_a_tiff_pillow_cannot_decode_says_why(empty_cli, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    picture(1).save(photos / "good.png")
    grey = grey_photo()
    (photos / "float64_pages.tif").write_bytes(tiff_bytes(grey / 255.0, pages=3))
    (photos / "jpeg2000.tif").write_bytes(tiff_bytes(grey, compression=34712, pages=2))

    report = empty_cli.json("index", photos)

    reasons = {Path(f["path"]).name: f["reason"] for f in report["failures"]}
    assert set(reasons) == {"float64_pages.tif", "jpeg2000.tif"}
    for reason in reasons.values():
        assert reason.startswith("unsupported TIFF compression/layout: "), reason
        assert "not an image" not in reason
    assert "unknown pixel mode" in reasons["float64_pages.tif"] and "64-bit float" in reasons["float64_pages.tif"]
    assert "compression 34712" in reasons["jpeg2000.tif"]
    # A TIFF that opens but whose strips don't decode says so, with its layout, not just "corrupt image".
    with pytest.raises(BadImage, match=r"corrupt or unsupported TIFF data: .*\(compression tiff_adobe_deflate"):
        decode(tiff_bytes(grey, compression=8), 10**8)

    # similar on a file that failed says the recorded reason, not that the catalog has no such image
    result = empty_cli("similar", photos / "jpeg2000.tif", expect=2)
    assert "jpeg2000.tif failed to index: unsupported TIFF compression/layout" in result.output
    assert "no image in the catalog" not in result.output
    assert "no image in the catalog" in empty_cli("similar", photos / "never_seen.png", expect=2).output


@pytest.mark.parametrize("size", [(1000, 20), (20, 1000)])
def test_panorama_thumbnail_is_letterboxed(empty_cli, tmp_path, size):
    photos = tmp_path / "photos"
    photos.mkdir()
    strip = Image.new("RGB", size, (200, 30, 30))
    strip.save(photos / "panorama.png")
    picture(3, (96, 72)).save(photos / "ordinary.png")

    report = empty_cli.json("index", photos)
    assert report["failed"] == 0

    thumb = thumbnail_of(empty_cli, photos / "panorama.png").convert("RGB")
    assert thumb.size == (256, 256)
    pixels = np.asarray(thumb, dtype=int)
    centre, corner = pixels[128, 128], pixels[2, 2]
    assert np.abs(centre - (200, 30, 30)).max() < 12  # the picture, whole, in the middle
    assert abs(corner[0] - corner[1]) < 4 and abs(corner[1] - corner[2]) < 4  # a neutral grey box
    assert thumbnail_of(empty_cli, photos / "ordinary.png").size == (96, 72)  # ordinary shapes as they are


def test_the_decode_threads_model_input_is_the_encoders_transform_exactly(model_spec):
    """The decode threads make the model input in PIL and numpy; it is what open_clip's torchvision
    transform makes, value for value, for every shape (tall, wide, square, smaller than the input)."""
    from torchvision import transforms

    from labeler.encoding.encoder import load_encoder
    from labeler.encoding.preprocessing import exact_port

    encoder = load_encoder(model_spec, mode="torch")
    assert encoder.preprocess is not encoder.transform  # the port, not torchvision, in the threads
    for seed, size in enumerate([(517, 389), (389, 701), (300, 300), (64, 64), (40, 23), (1000, 20)]):
        img = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
        expected = encoder.transform(img).numpy()
        assert encoder.preprocess(img).shape == expected.shape
        assert np.abs(encoder.preprocess(img) - expected).max() < 1e-5, size
    # anything the port does not reproduce (here a random crop) is refused, with the reason
    odd = transforms.Compose([transforms.Resize(64), transforms.RandomCrop(8), transforms.ToTensor()])
    assert isinstance(exact_port(odd, {}, 64), str)
