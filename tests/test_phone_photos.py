"""Every photo a phone takes: HEIC, AVIF, ICO, JFIF and uppercase names, wide-gamut colour, float
TIFFs and 108-megapixel photos, indexed through the real CLI with the real labeler-tiny model.

The files are real: HEIC written by pillow-heif's own encoder (the extra ``labeler[heif]``), AVIF and
ICO by Pillow, P3 and Adobe RGB profiles by ``tests.imagegen.icc_profile``. Nothing is skipped
silently: what a walk leaves out is in ``skips`` with its reason.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from PIL import Image, ImageDraw, ImageEnhance

from labeler.config import Config
from labeler.demo_world import render
from labeler.encoding.images import HEIF_MISSING, decode
from labeler.errors import ConfigError
from tests.cli import ROOT
from tests.imagegen import ADOBE_RGB, DISPLAY_P3, float_rgb_tiff, icc_profile, in_profile, picture


def photo(index: int, size: int = 160) -> Image.Image:
    """A generated workshop photo, distinct per ``index``."""
    return render(11, index, size=size)[0].convert("RGB")


def heic_bytes(img: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    pillow_heif.from_pillow(img).save(out, format="HEIF", quality=quality)
    return out.getvalue()


def encoded(img: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def thumbnail_of(home: Path, path: Path) -> Image.Image:
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return Image.open(home / "thumbnails" / sha[:2] / f"{sha}.jpg").convert("RGB")


def colours(img: Image.Image) -> np.ndarray:
    """The picture's colours at 32 x 32 (box means): how it renders, apart from JPEG's pixel noise."""
    return np.asarray(img.convert("RGB").resize((32, 32), Image.Resampling.BOX), dtype=float)


def vectors_by_path(home: Path, model: str) -> dict[str, np.ndarray]:
    from sqlalchemy import select

    from labeler.collection import Collection
    from labeler.store.catalog import ImageFile

    collection = Collection(Config(home=home, model=model))
    with collection.session() as s:
        ids, vectors = collection.vectors.read(s)
        paths = dict(s.execute(select(ImageFile.image_id, ImageFile.path).where(ImageFile.status == "ok")).all())
    return {paths[int(i)]: v for i, v in zip(ids, vectors)}


def formats_by_path(home: Path) -> dict[str, str]:
    from sqlalchemy import select

    from labeler.store import db
    from labeler.store.catalog import Image as ImageRow, ImageFile

    with db.session_scope(Config(home=home)) as s:
        return dict(s.execute(select(ImageFile.path, ImageRow.format).join(ImageRow, ImageRow.id == ImageFile.image_id)).all())


def write_phone_library(folder: Path) -> dict[str, tuple[Path, Path]]:
    """Each kind of phone file beside a PNG of the same photo: {kind: (file, its PNG twin)}."""
    folder.mkdir(parents=True, exist_ok=True)
    kinds = {
        "heic": ("IMG_0001.heic", lambda img: heic_bytes(img)),
        "HEIC upper case": ("IMG_0002.HEIC", lambda img: heic_bytes(img)),
        "heif": ("IMG_0003.heif", lambda img: heic_bytes(img)),
        "avif": ("IMG_0004.avif", lambda img: encoded(img, "AVIF", quality=90)),
        "jfif": ("IMG_0005.jfif", lambda img: encoded(img, "JPEG", quality=92)),
        "JPG upper case": ("IMG_0006.JPG", lambda img: encoded(img, "JPEG", quality=92)),
        "ico": ("favicon.ico", lambda img: encoded(img.resize((128, 128)), "ICO", sizes=[(128, 128)])),
        "float tiff": ("scan.tif", lambda img: float_rgb_tiff(np.asarray(img, np.float32) / 255, predictor=3,
                                                              deflate=True, rows_per_strip=37)),
    }
    made = {}
    for index, (kind, (name, encode)) in enumerate(kinds.items()):
        img = photo(index)
        if kind == "ico":
            img = img.resize((128, 128))
        (folder / name).write_bytes(encode(img))
        twin = folder / f"twin_{index}.png"
        img.save(twin)
        made[kind] = (folder / name, twin)
    return made


def test_a_phone_library_indexes_every_photo_and_says_what_it_left_out(empty_cli, model_spec, tmp_path):
    photos = tmp_path / "phone"
    made = write_phone_library(photos)
    (photos / "RAW_0001.DNG").write_bytes(b"II*\x00" + b"\x00" * 64)  # a camera raw: image-like, not decoded
    (photos / "vector.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (photos / "notes.txt").write_text("not an image, and not image-like")

    report = empty_cli.json("index", photos)

    assert report["failed"] == 0, report["failures"]
    assert report["embedded"] == report["added"] == 2 * len(made)
    skips = {Path(s["path"]).name: s["reason"] for s in report["skips"]}
    assert set(skips) == {"RAW_0001.DNG", "vector.svg"}  # every image-like file left out, each with why
    assert skips["RAW_0001.DNG"].startswith("camera raw image") and skips["vector.svg"].startswith("vector image")

    # Each file decodes as the photo it holds: its nearest image is the PNG of the same photo.
    vectors = vectors_by_path(empty_cli.home, model_spec)
    for kind, (path, twin) in made.items():
        others = {p: v for p, v in vectors.items() if p != str(path)}
        nearest = max(others, key=lambda p: float(others[p] @ vectors[str(path)]))
        assert nearest == str(twin), kind
        assert float(vectors[str(path)] @ vectors[str(twin)]) > 0.97, kind
    formats = formats_by_path(empty_cli.home)
    for kind, expected in (("heic", "HEIF"), ("HEIC upper case", "HEIF"), ("avif", "AVIF"), ("ico", "ICO"),
                           ("float tiff", "TIFF"), ("jfif", "JPEG"), ("JPG upper case", "JPEG")):
        assert formats[str(made[kind][0])] == expected, kind


def _without_heif(tmp_path: Path) -> dict[str, str]:
    """An environment in which ``import pillow_heif`` fails, as where the extra is not installed."""
    blocker = tmp_path / "no_heif" / "pillow_heif"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('pillow-heif is not installed')\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker.parent), str(ROOT)])}


def test_without_the_heif_extra_heic_files_are_skipped_naming_it(tmp_path):
    photos = tmp_path / "phone"
    photos.mkdir()
    (photos / "IMG_0001.HEIC").write_bytes(heic_bytes(photo(1)))
    (photos / "live.heif").write_bytes(heic_bytes(photo(2)))
    photo(3).save(photos / "ok.png")
    disguised = tmp_path / "heic_named.jpg"  # HEIC content under another name, given by path
    disguised.write_bytes(heic_bytes(photo(4)))
    code = ("import json, sys\n"
            "from labeler.collection import Collection\nfrom labeler.config import Config\n"
            "from labeler.ingest import run\n"
            "report = run.index_paths(Collection(Config(home=sys.argv[1])), [sys.argv[2], sys.argv[3]], embed=False)\n"
            "print(json.dumps(report.to_dict()))\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "home"), str(photos), str(disguised)],
                          cwd=ROOT, env=_without_heif(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    import json

    report = json.loads(done.stdout.strip().splitlines()[-1])
    skips = {Path(s["path"]).name: s["reason"] for s in report["skips"]}
    assert skips == {"IMG_0001.HEIC": HEIF_MISSING, "live.heif": HEIF_MISSING}
    assert "labeler[heif]" in HEIF_MISSING
    failures = {Path(f["path"]).name: f["reason"] for f in report["failures"]}
    assert failures == {"heic_named.jpg": HEIF_MISSING}  # not "not an image"
    assert report["added"] == 1


def big_photo(path: Path, size=(12000, 9000)) -> Path:
    """A 108-megapixel phone photo (greyscale, so it is written in a second or two)."""
    img = Image.new("L", size, 120)
    ImageDraw.Draw(img).rectangle((2000, 1500, 9000, 7000), fill=30)
    img.save(path, "JPEG", quality=70)
    return path


def test_a_108_megapixel_photo_follows_max_pixels(empty_cli, tmp_path):
    photos = tmp_path / "big"
    photos.mkdir()
    big_photo(photos / "IMG_108MP.jpg")
    picture(1).save(photos / "small.png")

    report = empty_cli.json("index", photos)
    assert report["failed"] == 0, report["failures"]  # over Pillow's own default limit (89 M), under ours

    strict = Config(home=tmp_path / "strict", max_pixels=100_000_000)
    from labeler.collection import Collection
    from labeler.ingest import run

    refused = run.index_paths(Collection(strict), [photos], embed=False)
    assert [Path(f["path"]).name for f in refused.failures] == ["IMG_108MP.jpg"]
    assert "decompression bomb" in refused.failures[0]["reason"]
    assert "LABELER_MAX_PIXELS" in refused.failures[0]["reason"]


def test_max_pixels_is_a_setting():
    assert Config.from_env({"LABELER_MAX_PIXELS": "250000000"}).max_pixels == 250_000_000
    assert Config.from_env({}).max_pixels == 128_000_000
    for bad in ("0", "lots", "-5"):
        with pytest.raises(ConfigError, match="LABELER_MAX_PIXELS"):
            Config.from_env({"LABELER_MAX_PIXELS": bad})
    # Past Pillow's own hard limit (2 x 89 M pixels) the setting still decides: a header claiming
    # 196 M pixels is a bomb at the default, and only truncated once the limit allows it.
    from tests.imagegen import png_with_header

    bomb = png_with_header(14_000, 14_000)
    from labeler.encoding.images import BadImage

    with pytest.raises(BadImage, match="decompression bomb.*LABELER_MAX_PIXELS"):
        decode(bomb, Config().max_pixels)
    with pytest.raises(BadImage) as allowed:
        decode(bomb, 200_000_000)
    assert "decompression bomb" not in str(allowed.value)


WIDE = {"Display P3": (DISPLAY_P3, None), "Adobe RGB (1998)": (ADOBE_RGB, 563 / 256)}


def write_wide_gamut(folder: Path, index: int) -> dict[str, Path]:
    """One photo as an sRGB JPEG and as JPEGs and a PNG whose pixels are in P3 or Adobe RGB, with
    the profile embedded."""
    folder.mkdir(parents=True, exist_ok=True)
    img = ImageEnhance.Color(photo(index, size=224)).enhance(2.5)  # saturated, as a phone's photo is
    paths = {"sRGB": folder / f"srgb_{index}.jpg"}
    img.save(paths["sRGB"], "JPEG", quality=95)
    for name, (primaries, gamma) in WIDE.items():
        profile = icc_profile(name, primaries, gamma)
        wide = in_profile(img, profile)
        stem = name.split()[0].lower()
        paths[name] = folder / f"{stem}_{index}.jpg"
        wide.save(paths[name], "JPEG", quality=95, icc_profile=profile)
        paths[f"{name} png"] = folder / f"{stem}_{index}.png"
        wide.save(paths[f"{name} png"], "PNG", icc_profile=profile)
    return paths


def test_wide_gamut_photos_are_converted_to_srgb(empty_cli, model_spec, tmp_path):
    photos = tmp_path / "wide"
    sets = [write_wide_gamut(photos, index) for index in range(3)]
    report = empty_cli.json("index", photos)
    assert report["failed"] == 0
    vectors = vectors_by_path(empty_cli.home, model_spec)

    for paths in sets:
        reference = colours(thumbnail_of(empty_cli.home, paths["sRGB"]))
        for kind, path in paths.items():
            if kind == "sRGB":
                continue
            # the test can fail: the file's own pixels, unconverted, are far from the sRGB rendering
            assert np.abs(colours(Image.open(path)) - colours(Image.open(paths["sRGB"]))).mean() > 4, kind
            assert np.abs(colours(thumbnail_of(empty_cli.home, path)) - reference).mean() <= 2.0, kind
            cosine = float(vectors[str(path)] @ vectors[str(paths["sRGB"])])
            assert cosine >= 0.995, (kind, cosine)


def test_profiles_that_need_no_conversion_or_cannot_be_read():
    img = photo(5)
    pixels = np.asarray(img, dtype=int)
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for profile in (srgb, b"not a profile at all"):
        decoded = decode(encoded(img, "PNG", icc_profile=profile), 10**8)
        assert np.array_equal(np.asarray(decoded.image, dtype=int), pixels)
    # transparency survives the conversion, then is composited on white as always
    p3 = icc_profile("Display P3", DISPLAY_P3)
    rgba = in_profile(img, p3).convert("RGBA")
    rgba.putalpha(Image.new("L", img.size, 255))
    decoded = decode(encoded(rgba, "PNG", icc_profile=p3), 10**8)
    assert np.abs(np.asarray(decoded.image, dtype=float) - pixels).mean() < 1.0


@pytest.mark.parametrize("layout", [{}, {"planar": 2}, {"deflate": True}, {"deflate": True, "predictor": 3},
                                    {"planar": 2, "predictor": 3, "rows_per_strip": 5}])
def test_float_rgb_tiffs_read_as_the_8_bit_picture(layout):
    img = photo(6, size=64)
    pixels = np.asarray(img, dtype=np.float32) / 255
    decoded = decode(float_rgb_tiff(pixels, **layout), 10**8)
    assert (decoded.format, decoded.width, decoded.height) == ("TIFF", 64, 64)
    assert np.abs(np.asarray(decoded.image, dtype=int) - np.asarray(img, dtype=int)).max() <= 1
    # HDR values beyond [0, 1] are stretched from their own range, so the picture still shows
    hdr = decode(float_rgb_tiff(pixels * 40.0 + 2.0, **layout), 10**8)
    assert np.asarray(hdr.image).std() > 20


def test_broken_float_rgb_tiffs_say_what_is_wrong():
    from labeler.encoding.images import BadImage

    pixels = np.asarray(photo(7, size=64), dtype=np.float32) / 255
    whole = float_rgb_tiff(pixels)
    with pytest.raises(BadImage, match="^truncated image: float RGB strip"):
        decode(whole[: len(whole) // 2], 10**8)
    with pytest.raises(BadImage, match="^decompression bomb: 64x64 exceeds LABELER_MAX_PIXELS"):
        decode(whole, 1000)
    deflated = bytearray(float_rgb_tiff(pixels, deflate=True))
    deflated[-200:] = b"\xff" * 200
    with pytest.raises(BadImage, match="^corrupt image: float RGB TIFF strip does not inflate"):
        decode(bytes(deflated), 10**8)
