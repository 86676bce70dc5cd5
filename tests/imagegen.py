"""Real image files for tests: distinct generated pictures and a corpus of broken ones."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

FORMATS = [("png", "PNG"), ("jpg", "JPEG"), ("webp", "WEBP"), ("gif", "GIF"), ("bmp", "BMP"), ("tiff", "TIFF")]


def picture(seed: int, size: tuple[int, int] = (96, 72)) -> Image.Image:
    """A distinct picture: a noisy background with a few coloured shapes."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, 3)
    pixels = np.clip(base + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(pixels)
    draw = ImageDraw.Draw(img)
    for _ in range(3):
        x0, y0 = rng.integers(0, size[0] // 2), rng.integers(0, size[1] // 2)
        x1, y1 = x0 + rng.integers(10, size[0] // 2), y0 + rng.integers(10, size[1] // 2)
        draw.rectangle((int(x0), int(y0), int(x1), int(y1)), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return img


def write_good_images(folder: Path, count: int, seed: int = 0, formats=FORMATS) -> list[Path]:
    """``count`` distinct images in rotating formats."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        ext, fmt = formats[i % len(formats)]
        path = folder / f"good_{seed}_{i:04d}.{ext}"
        picture(seed * 100_000 + i).save(path, fmt)
        paths.append(path)
    return paths


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_with_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` with a tiny payload: a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def jpeg_bytes(seed: int, size=(120, 90)) -> bytes:
    out = io.BytesIO()
    picture(seed, size).save(out, "JPEG", quality=90)
    return out.getvalue()


def write_broken_corpus(folder: Path, copies: int = 1) -> dict[str, str]:
    """Broken files of every kind the ingest must survive; returns {path: kind}."""
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}

    def put(name: str, data: bytes, kind: str) -> None:
        path = folder / name
        path.write_bytes(data)
        made[str(path)] = kind

    for c in range(copies):
        good_jpeg = jpeg_bytes(10_000 + c)
        png = io.BytesIO()
        picture(20_000 + c).save(png, "PNG")
        put(f"zero_{c}.jpg", b"", "zero-byte")
        put(f"truncated_{c}.jpg", good_jpeg[: len(good_jpeg) // 2], "truncated")
        put(f"truncated_{c}.png", png.getvalue()[: len(png.getvalue()) // 2], "truncated")
        put(f"text_{c}.png", b"this is not an image\n" * 20, "non-image")
        put(f"html_{c}.jpeg", b"<html><body>nope</body></html>", "non-image")
        put(f"bomb_{c}.png", png_with_header(60_000 + c, 60_000), "decompression bomb")
        dangling = folder / f"dangling_{c}.jpg"
        dangling.symlink_to(folder / f"does_not_exist_{c}.jpg")
        made[str(dangling)] = "unreadable"
    return made


def _encoded(img: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def jpeg_with_orientation(seed: int, orientation: int, size=(80, 40)) -> bytes:
    """A JPEG stored ``size`` wide whose EXIF says to rotate it on display."""
    img = picture(seed, size)
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def tiff_bytes(pixels: np.ndarray, compression: int = 1, pages: int = 1) -> bytes:
    """A little-endian greyscale TIFF of ``pixels`` [height, width] (any dtype), one strip per page.

    Written by hand so a test can make what Pillow cannot: 64-bit floats, or a compression
    (34712, JPEG 2000) it has no decoder for. The strip holds the raw samples either way.
    """
    height, width = pixels.shape
    kind = {"u": 1, "i": 2, "f": 3}[pixels.dtype.kind]
    strip = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    tags = [(256, width), (257, height), (258, pixels.dtype.itemsize * 8), (259, compression), (262, 1),
            (273, 0), (277, 1), (278, height), (279, len(strip)), (339, kind)]
    ifd_size = 2 + 12 * len(tags) + 4
    out = bytearray(b"II*\x00" + struct.pack("<I", 8))
    for page in range(pages):
        ifd_at = len(out)
        strip_at = ifd_at + ifd_size
        next_ifd = strip_at + len(strip) if page < pages - 1 else 0
        out += struct.pack("<H", len(tags))
        for tag, value in tags:
            out += struct.pack("<HHII", tag, 4, 1, strip_at if tag == 273 else value)  # LONG values
        out += struct.pack("<I", next_ifd) + strip
    return bytes(out)


def write_odd_shapes(folder: Path) -> list[Path]:
    """Valid images of extreme shapes: a 2000×1 strip, a 1×3000 one and a 40,001×2 banner."""
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for name, size in (("strip.png", (2000, 1)), ("tall.png", (1, 3000)), ("banner.png", (40_001, 2))):
        Image.new("RGB", size, (30, 90, 200)).save(folder / name, "PNG")
        made.append(folder / name)
    return made


def write_tiny_images(folder: Path) -> list[Path]:
    """Valid images of a few pixels, as on the web: a 1×1 PNG, a 2×2 PNG and a 1×1 spacer GIF."""
    folder.mkdir(parents=True, exist_ok=True)
    made = [(folder / "pixel.png", Image.new("RGB", (1, 1), (200, 30, 30)), "PNG"),
            (folder / "icon.png", Image.fromarray(np.array([[[0, 0, 0], [255, 0, 0]], [[0, 255, 0], [0, 0, 255]]],
                                                          dtype=np.uint8)), "PNG"),
            (folder / "spacer.gif", Image.new("P", (1, 1), 0), "GIF")]
    for path, img, fmt in made:
        img.save(path, fmt)
    return [path for path, _, _ in made]
