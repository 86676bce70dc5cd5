"""Images to check an encoder on: the demo world's objects and photo-like JPEGs, made in memory.

Noise alone is a poor probe: int8 error shows on smooth content with hard edges, which is what
photos are. Both kinds here are deterministic, so a check gives the same answer every time.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def _photo(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """Smooth content with a few hard-edged shapes and sensor noise (not yet JPEG-encoded)."""
    base = rng.integers(0, 256, (size[1] // 32, size[0] // 32, 3), dtype=np.uint8)
    img = Image.fromarray(base).resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, size[0] - 200)), int(rng.integers(0, size[1] - 200))
        draw.ellipse((x0, y0, x0 + int(rng.integers(60, 200)), y0 + int(rng.integers(60, 200))),
                     fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    noisy = np.asarray(img, dtype=np.int16) + rng.normal(0, 4, (size[1], size[0], 3)).astype(np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def write_photos(folder: Path, count: int, size: tuple[int, int] = (1024, 768), seed: int = 0) -> None:
    """Write ``count`` photo-like JPEGs (quality 90) into ``folder`` as ``photo_NNNN.jpg``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        _photo(rng, size).save(folder / f"photo_{i:04d}.jpg", quality=90)


def photos(count: int, size: tuple[int, int] = (400, 300), seed: int = 0) -> list[Image.Image]:
    """``count`` photo-like images, JPEG-encoded and decoded again, in memory (min size 256×256)."""
    size = (max(size[0], 256), max(size[1], 256))
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        buf = io.BytesIO()
        _photo(rng, size).save(buf, format="JPEG", quality=90)
        out.append(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return out


def world_images(count: int, seed: int = 11, size: int = 128) -> tuple[list[Image.Image], list[dict[str, str]]]:
    """The first ``count`` images of demo world ``seed`` as written to disk, and their truth rows."""
    from ..demo_world import encode, render

    images, rows = [], []
    for i in range(count):
        image, row, fmt = render(seed, i, size)
        images.append(Image.open(io.BytesIO(encode(image, fmt))).convert("RGB"))
        rows.append(row)
    return images, rows
