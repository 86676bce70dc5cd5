"""Copies of an image as people make them, and a pixel check that two images are one picture.

Pure image maths: PIL images and numpy arrays in and out, no catalog, no model.

* :func:`make_copies`: a JPEG re-encode (quality 50-90), a resize (40-90 %), a crop (up to 8 %)
  and a colour-profile change, each drawn from ``rng``. ``duplicates`` calibrates its thresholds
  on these, per model.
* :func:`signatures` and :func:`agreement`: a coarse grey-level picture of an image (16 x 16,
  zero mean, unit norm) over a few crop windows, and the best correlation of two images' pictures.
  A model that was trained on few kinds of images can put two distinct shots of one subject as
  close as a copy; their pixels still differ where a copy's do not.
* :func:`colours` and :func:`colour_distance`: the mean colour of each cell of a 4 x 4 grid, and
  how far two images' are apart. The grey picture cannot tell a black disc from a purple one in
  the same place; a colour-profile change moves colours far less than that.
"""

from __future__ import annotations

import io
from typing import NamedTuple

import numpy as np
from PIL import Image

COPY_KINDS = ("jpeg", "resize", "crop", "profile")
JPEG_QUALITY = (50, 90)
RESIZE = (0.40, 0.90)
MAX_CROP = 0.08
GRID = 16  # the signature's side
COLOUR_GRID = 4
BASE = 64  # the grey image the windows are cut from
WINDOW_SCALES = (0.96, 0.92)  # a crop of up to 8 % keeps at least 92 % of each side

# A colour-profile change as a viewer that ignores the tag sees it: the pixels converted between
# sRGB and a common wide-gamut profile of cameras and phones (Display P3, Adobe RGB 1998), either
# way, in linear light, and written back untagged. Matrices: each profile's RGB to XYZ (D65).
_TO_XYZ = {
    "srgb": np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]),
    "display-p3": np.array([[0.4866, 0.2657, 0.1982], [0.2290, 0.6917, 0.0793], [0.0000, 0.0451, 1.0439]]),
    "adobe-rgb": np.array([[0.5767, 0.1856, 0.1882], [0.2974, 0.6273, 0.0753], [0.0270, 0.0707, 0.9911]]),
}
PROFILES = ("display-p3", "adobe-rgb")


def _to_linear(a: np.ndarray) -> np.ndarray:
    return np.where(a <= 0.04045, a / 12.92, ((a + 0.055) / 1.055) ** 2.4)


def _to_srgb(a: np.ndarray) -> np.ndarray:
    a = np.clip(a, 0.0, 1.0)
    return np.where(a <= 0.0031308, a * 12.92, 1.055 * a ** (1 / 2.4) - 0.055)


def profile_change(img: Image.Image, profile: str = "display-p3", inverse: bool = False) -> Image.Image:
    """``img``'s values converted from sRGB to ``profile`` (or back, ``inverse``) and left untagged:
    colours shift, shapes do not."""
    source, target = (_TO_XYZ[profile], _TO_XYZ["srgb"]) if inverse else (_TO_XYZ["srgb"], _TO_XYZ[profile])
    matrix = (np.linalg.inv(target) @ source).astype(np.float32)
    a = np.asarray(img.convert("RGB"), np.float32) / 255.0
    out = _to_srgb(_to_linear(a) @ matrix.T)
    return Image.fromarray(np.round(out * 255).astype(np.uint8))


def make_copy(img: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """One copy of ``img`` (RGB) of ``kind`` (one of :data:`COPY_KINDS`), its settings drawn from ``rng``."""
    img = img.convert("RGB")
    if kind == "jpeg":
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1)))
        buf.seek(0)
        return Image.open(buf).convert("RGB")
    if kind == "resize":
        f = rng.uniform(*RESIZE)
        return img.resize((max(1, round(img.width * f)), max(1, round(img.height * f))), Image.Resampling.BICUBIC)
    if kind == "crop":
        w, h = img.size
        cx, cy = rng.uniform(0, MAX_CROP, 2)
        dx, dy = max(1, round(w * cx)), max(1, round(h * cy))  # at least a pixel: a crop, not a copy
        left, top = int(rng.integers(0, dx + 1)), int(rng.integers(0, dy + 1))
        return img.crop((left, top, max(left + 1, w - (dx - left)), max(top + 1, h - (dy - top))))
    if kind == "profile":
        return profile_change(img, PROFILES[int(rng.integers(len(PROFILES)))], bool(rng.integers(2)))
    raise ValueError(f"unknown copy kind {kind!r}: one of {COPY_KINDS}")


def make_copies(img: Image.Image, rng: np.random.Generator) -> list[tuple[str, Image.Image]]:
    """One copy of ``img`` of each kind in :data:`COPY_KINDS`: ``[(kind, image)]``."""
    return [(kind, make_copy(img, kind, rng)) for kind in COPY_KINDS]


def _unit(a: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1)
    a = a - a.mean(axis=1, keepdims=True)
    return (a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-6)).astype(np.float32)


def _spans() -> list[tuple[int, int]]:
    """(start, length) along one side of the ``BASE`` grey image: the whole, then each scale
    at the start, the centre and the end."""
    out = [(0, BASE)]
    for scale in WINDOW_SCALES:
        side = round(BASE * scale)
        out += [(0, side), ((BASE - side) // 2, side), (BASE - side, side)]
    return out


def _windows() -> list[tuple[int, int, int, int]]:
    """(left, top, width, height) of the crop windows: every pair of spans, since a crop may
    take more from one side than the other (and the copy's shape changes with it)."""
    return [(x, y, w, h) for x, w in _spans() for y, h in _spans()]


WINDOWS = _windows()


def signatures(img: Image.Image) -> np.ndarray:
    """``[W, 256]`` float32: the grey 16 x 16 picture of each of :data:`WINDOWS` of ``img``, zero
    mean, unit norm; row 0 is the whole image."""
    grey = img.convert("L").resize((BASE, BASE), Image.Resampling.BOX)
    cells = [np.asarray(grey.crop((x, y, x + w, y + h)).resize((GRID, GRID), Image.Resampling.BOX), np.float32)
             for x, y, w, h in WINDOWS]
    return _unit(np.stack(cells))


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """How well two images' :func:`signatures` ``[W, 256]`` agree, -1..1: the best correlation
    of one's whole picture with any window of the other (either may be the cropped one)."""
    return float(max((a @ b[0]).max(), (b @ a[0]).max()))


def colours(img: Image.Image) -> np.ndarray:
    """``[W, 4, 4, 3]`` float32: the mean RGB (0..1) of each cell of a 4 x 4 grid over each of
    :data:`WINDOWS` of ``img`` (row 0 the whole image), so a crop is compared where it lines up."""
    base = img.convert("RGB").resize((BASE, BASE), Image.Resampling.BOX)
    cells = [np.asarray(base.crop((x, y, x + w, y + h)).resize((COLOUR_GRID, COLOUR_GRID), Image.Resampling.BOX),
                        np.float32) for x, y, w, h in WINDOWS]
    return np.stack(cells) / 255.0


def colour_distance(a: np.ndarray, b: np.ndarray) -> float:
    """How far two images' :func:`colours` are apart: the mean distance (RGB, 0..sqrt 3) cell by
    cell, of one's whole image to the closest window of the other (either may be the cropped one)."""
    one = np.linalg.norm(a - b[0], axis=-1).mean(axis=(1, 2)).min()
    other = np.linalg.norm(b - a[0], axis=-1).mean(axis=(1, 2)).min()
    return float(min(one, other))


class Look(NamedTuple):
    """What the pixel checks compare of one image: its :func:`signatures` and :func:`colours`."""

    grey: np.ndarray
    colour: np.ndarray


def look(img: Image.Image) -> Look:
    return Look(signatures(img), colours(img))
