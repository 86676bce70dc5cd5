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


# -- wide-gamut colour ------------------------------------------------------------------------
# Primaries (x, y) of red, green, blue; both spaces have a D65 white point.
DISPLAY_P3 = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))
ADOBE_RGB = ((0.640, 0.330), (0.210, 0.710), (0.150, 0.060))
_D65 = (0.3127, 0.3290)
_D50_XYZ = np.array([0.9642, 1.0, 0.8249])


def _xyz(xy: tuple[float, float]) -> np.ndarray:
    x, y = xy
    return np.array([x / y, 1.0, (1 - x - y) / y])


def _colorants_d50(primaries) -> np.ndarray:
    """The RGB → XYZ matrix of ``primaries`` (columns: red, green, blue), Bradford-adapted to D50 as ICC asks."""
    corners = np.stack([_xyz(p) for p in primaries], axis=1)
    scale = np.linalg.solve(corners, _xyz(_D65))
    to_xyz = corners * scale
    bradford = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
    cone = np.diag((bradford @ _D50_XYZ) / (bradford @ _xyz(_D65)))
    return np.linalg.inv(bradford) @ cone @ bradford @ to_xyz


def _s15(value: float) -> bytes:
    return struct.pack(">i", int(round(value * 65536)))


def _srgb_curve(samples: int = 1024) -> bytes:
    x = np.linspace(0, 1, samples)
    y = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    return b"curv\0\0\0\0" + struct.pack(">I", samples) + (np.rint(y * 65535).astype(">u2")).tobytes()


def icc_profile(name: str, primaries, gamma: float | None = None) -> bytes:
    """An ICC v2 display profile (matrix and tone curves) for an RGB space: ``gamma`` as a pure power
    curve (Adobe RGB: 563/256), or None for the sRGB curve (Display P3). Written by hand, since Pillow
    makes only sRGB and LAB profiles."""
    matrix = _colorants_d50(primaries)
    ascii_name = name.encode("ascii") + b"\0"
    desc = (b"desc\0\0\0\0" + struct.pack(">I", len(ascii_name)) + ascii_name
            + b"\0" * 8 + b"\0" * 3 + b"\0" * 67)  # no Unicode or ScriptCode names
    trc = (b"curv\0\0\0\0" + struct.pack(">IH", 1, int(round(gamma * 256))) if gamma else _srgb_curve())
    xyz = [b"XYZ \0\0\0\0" + b"".join(_s15(v) for v in column) for column in matrix.T]
    tags = [(b"desc", desc), (b"wtpt", b"XYZ \0\0\0\0" + b"".join(_s15(v) for v in _D50_XYZ)),
            (b"cprt", b"text\0\0\0\0public domain\0"),
            (b"rXYZ", xyz[0]), (b"gXYZ", xyz[1]), (b"bXYZ", xyz[2]),
            (b"rTRC", trc), (b"gTRC", trc), (b"bTRC", trc)]
    table_end = 128 + 4 + 12 * len(tags)
    body, entries, at = b"", b"", table_end
    for signature, data in tags:
        data += b"\0" * (-len(data) % 4)
        entries += signature + struct.pack(">II", at, len(data))
        body += data
        at += len(data)
    size = at
    header = (struct.pack(">I", size) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ "
              + struct.pack(">6H", 2026, 1, 1, 0, 0, 0) + b"acsp" + b"APPL" + b"\0" * 4 + b"\0" * 8
              + b"\0" * 8 + b"\0" * 4 + b"".join(_s15(v) for v in _D50_XYZ) + b"lcms" + b"\0" * 44)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + entries + body


def in_profile(img: Image.Image, profile: bytes) -> Image.Image:
    """The sRGB picture ``img`` with its pixels converted into the RGB space of ``profile``."""
    from PIL import ImageCms

    source = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    target = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    return ImageCms.profileToProfile(img, source, target, outputMode="RGB")


def float_rgb_tiff(pixels: np.ndarray, planar: int = 1, predictor: int = 1, deflate: bool = False,
                   rows_per_strip: int | None = None) -> bytes:
    """A little-endian float RGB TIFF of ``pixels`` [height, width, 3] float32, as tifffile or OpenCV
    write them: chunky or planar, raw or deflated, with the floating-point predictor or not."""
    height, width, _ = pixels.shape
    rows_per_strip = rows_per_strip or height
    data = pixels.astype("<f4")
    planes = [data] if planar == 1 else [data[..., c:c + 1] for c in range(3)]
    strips = []
    for plane in planes:
        for top in range(0, height, rows_per_strip):
            rows = np.ascontiguousarray(plane[top:top + rows_per_strip]).reshape(min(rows_per_strip, height - top), -1)
            if predictor == 3:  # bytes regrouped most significant first, then byte deltas along the row
                raw = rows.astype(">f4").view(np.uint8).reshape(rows.shape[0], -1, 4).transpose(0, 2, 1)
                raw = np.ascontiguousarray(raw).reshape(rows.shape[0], -1)
                stride = 3 if planar == 1 else 1  # libtiff's fpDiff: deltas a pixel's samples apart
                raw = raw.reshape(raw.shape[0], -1, stride)
                raw = np.diff(raw, axis=1, prepend=np.zeros((raw.shape[0], 1, stride), np.uint8)).astype(np.uint8)
                raw = raw.reshape(raw.shape[0], -1)
                chunk = raw.tobytes()
            else:
                chunk = rows.tobytes()
            strips.append(zlib.compress(chunk) if deflate else chunk)
    count = len(strips)
    tag_count = 13
    extra_at = 8 + 2 + 12 * tag_count + 4
    shorts = struct.pack("<3H", 32, 32, 32) + struct.pack("<3H", 3, 3, 3)
    offsets_at = extra_at + len(shorts)
    counts_at = offsets_at + 4 * count
    data_at = counts_at + 4 * count
    offsets, at = [], data_at
    for strip in strips:
        offsets.append(at)
        at += len(strip)
    tags = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 3, extra_at), (259, 3, 1, 8 if deflate else 1),
            (262, 3, 1, 2), (273, 4, count, offsets_at if count > 1 else offsets[0]), (277, 3, 1, 3),
            (278, 4, 1, rows_per_strip), (279, 4, count, counts_at if count > 1 else len(strips[0])),
            (284, 3, 1, planar), (317, 3, 1, predictor), (339, 3, 3, extra_at + 6), (305, 2, 4, 0x0041)]
    out = bytearray(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", tag_count))
    for tag, kind, n, value in tags:
        out += struct.pack("<HHII", tag, kind, n, value)
    out += struct.pack("<I", 0) + shorts
    out += struct.pack(f"<{count}I", *offsets) + struct.pack(f"<{count}I", *(len(s) for s in strips))
    return bytes(out) + b"".join(strips)
