"""Reading image files safely: formats, EXIF orientation, draft mode, and every way a file is bad."""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, TiffImagePlugin, UnidentifiedImageError

EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"})
MIN_SIDE = 1  # icons and spacer GIFs (1×1, 2×2) are valid images: CLIP resizes anything
# Beyond this aspect ratio the model sees the image letterboxed into a square (see model_view):
# CLIP's resize-shorter-side would turn a 2000×1 strip into a tensor of hundreds of megabytes.
MAX_ASPECT = 50
MODEL_VIEW_SIDE = 1024

ImageFile.LOAD_TRUNCATED_IMAGES = False


class BadImage(Exception):
    """A file that cannot be used; ``str(exc)`` is the reason recorded in the catalog."""


@dataclass
class Decoded:
    """A decoded image: RGB, upright, possibly reduced by JPEG draft mode."""

    image: Image.Image
    width: int  # upright size of the original, before draft reduction
    height: int
    format: str


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in EXTENSIONS


_TRANSPOSED = {5, 6, 7, 8}  # EXIF orientations that swap width and height


def decode(data: bytes, max_pixels: int, draft_size: int | None = None) -> Decoded:
    """Decode ``data`` into an upright RGB image; raise :class:`BadImage` with a reason.

    ``draft_size`` lets JPEG decode at a reduced scale that still covers that many pixels
    on the short side, which is several times faster for large photos.
    """
    if not data:
        raise BadImage("empty file (0 bytes)")
    fmt = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or "?"
            img, width, height = _upright(img, fmt, max_pixels, draft_size)
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(f"decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise BadImage(_unidentified_reason(data)) from None
    except OSError as exc:
        raise BadImage(_os_error_reason(exc, fmt, data)) from None
    except (ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError, ZeroDivisionError,
            MemoryError, struct.error) as exc:
        raise BadImage(f"corrupt image: {type(exc).__name__}: {exc}") from None
    return Decoded(img, width, height, "JPEG" if fmt == "MPO" else fmt)


def _upright(img: Image.Image, fmt: str, max_pixels: int, draft_size: int | None
             ) -> tuple[Image.Image, int, int]:
    """An opened image decoded upright in 8-bit RGB: (image, width, height as shown)."""
    if fmt not in FORMATS:
        raise BadImage(f"unsupported image format {fmt}")
    width, height = img.size
    _check_dimensions(width, height, max_pixels)
    depth = _declared_depth(img)  # read now: exif_transpose returns a copy without the TIFF tags
    orientation = img.getexif().get(0x0112, 1)
    if orientation in _TRANSPOSED:
        width, height = height, width
    if draft_size and fmt in {"JPEG", "MPO"}:
        scale = draft_size / min(img.size)
        if scale < 1:
            img.draft("RGB", (max(1, int(img.size[0] * scale)), max(1, int(img.size[1] * scale))))
    img.seek(0)  # first frame of animations
    img.load()
    img = ImageOps.exif_transpose(img)
    return _to_rgb(_to_8bit(img, depth)), width, height


def _os_error_reason(exc: OSError, fmt: str | None, data: bytes) -> str:
    """Why Pillow's ``OSError`` left the image undecoded."""
    message = str(exc) or type(exc).__name__
    if "truncated" in message.lower():
        return f"truncated image: {message}"
    if fmt == "TIFF":  # many compressions and layouts open but don't decode: say which
        return f"corrupt or unsupported TIFF data: {message}{_tiff_layout(data)}"
    return f"corrupt image: {message}"


def _unidentified_reason(data: bytes) -> str:
    """Why Pillow opened no format: its own words when ``data`` has a valid TIFF header.

    ``Image.open`` hides each plugin's reason behind "cannot identify image file", so a TIFF with
    a compression or sample layout Pillow lacks would read as not an image at all.
    """
    if data[:4] in TiffImagePlugin.PREFIXES and _tiff_layout(data):
        try:
            TiffImagePlugin.TiffImageFile(io.BytesIO(data))
        except Exception as exc:  # whatever the plugin raised is the reason
            message = str(exc) or type(exc).__name__
            return f"unsupported TIFF compression/layout: {message}{_tiff_layout(data)}"
    return "not an image (unrecognised content)"


def _tiff_layout(data: bytes) -> str:
    """`` (compression C, B-bit samples, ...)`` from the first TIFF directory; empty when it can't be read."""
    try:
        fp = io.BytesIO(data)
        ifd = TiffImagePlugin.ImageFileDirectory_v2(data[:8])
        fp.seek(ifd.next)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns of each bad tag; the failure already says enough
            ifd.load(fp)
        if TiffImagePlugin.IMAGEWIDTH not in ifd or TiffImagePlugin.IMAGELENGTH not in ifd:
            return ""
        compression = ifd.get(TiffImagePlugin.COMPRESSION, 1)
        bits = ifd.get(TiffImagePlugin.BITSPERSAMPLE, (1,))
        sample_format = ifd.get(TiffImagePlugin.SAMPLEFORMAT, (1,))
    except Exception:  # a header too broken to describe
        return ""
    name = TiffImagePlugin.COMPRESSION_INFO.get(compression, str(compression))
    bits = "/".join(map(str, bits)) if isinstance(bits, tuple) else str(bits)
    kind = {1: "unsigned", 2: "signed", 3: "float"}.get(
        sample_format[0] if isinstance(sample_format, tuple) and sample_format else sample_format, "other")
    return f" (compression {name}, {bits}-bit {kind} samples)"


def _check_dimensions(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise BadImage(f"decompression bomb: {width}x{height} exceeds {max_pixels} pixels")
    if min(width, height) < MIN_SIDE:
        raise BadImage(f"absurd dimensions: {width}x{height}")


@dataclass(frozen=True)
class Depth:
    """What a file declares about its samples (TIFF's BitsPerSample and SampleFormat); None: not said."""

    bits: int | None = None
    signed: bool | None = None


def _declared_depth(img: Image.Image) -> Depth:
    tags = getattr(img, "tag_v2", None)  # only TIFF says; a 16-bit PNG is always the full 16 bits
    if tags is None:
        return Depth()

    def first(tag: int) -> int | None:
        value = tags.get(tag)
        value = value[0] if isinstance(value, tuple) and value else value
        return value if isinstance(value, int) else None

    bits, sample_format = first(258), first(339)
    return Depth(bits if bits and bits > 0 else None,
                 None if sample_format not in (1, 2) else sample_format == 2)


_WIDE_ROWS = 1024  # rows scaled at a time, so a huge 16-bit image never becomes one huge float array


def _to_8bit(img: Image.Image, depth: Depth) -> Image.Image:
    """Greyscale samples wider than 8 bits (modes ``I;16*``, ``I``, ``F``) scaled to mode ``L``.

    Pillow's own ``convert`` clips them at 255, so a 16-bit photo turns white and a float one black.
    Integers are scaled from their real bit depth (16-bit: /257), as an 8-bit export would look;
    floats from [0, 1], or from their own min-max when they fall outside it. Other modes pass through.
    """
    if img.mode == "F":
        samples = np.asarray(img)
        finite = samples[np.isfinite(samples)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if low >= 0.0 and high <= 1.0:
            low, high = 0.0, 1.0
    elif img.mode == "I" or img.mode.startswith("I;"):
        samples = np.asarray(img)  # int32 for I, uint16 for I;16*
        width = samples.dtype.itemsize * 8
        signed = samples.dtype.kind == "i" if depth.signed is None else depth.signed
        bits = min(depth.bits or width, width)
        if signed:
            # Signed data that never goes below zero is shown like its unsigned half, as exports do.
            high = 2.0 ** (bits - 1) - 1
            low = -high - 1 if samples.size and samples.min() < 0 else 0.0
        else:
            low, high = 0.0, 2.0 ** bits - 1
            if samples.dtype.kind == "i":  # unsigned 32-bit TIFF samples held in Pillow's int32
                samples = samples.astype(np.int64) & (2 ** width - 1)
    else:
        return img
    out = np.empty(samples.shape, dtype=np.uint8)
    span = high - low
    for start in range(0, samples.shape[0], _WIDE_ROWS):
        rows = samples[start:start + _WIDE_ROWS].astype(np.float64)
        rows = np.nan_to_num(rows, nan=low, posinf=high, neginf=low)
        scaled = (rows - low) / span if span > 0 else np.zeros_like(rows)
        out[start:start + _WIDE_ROWS] = np.rint(np.clip(scaled, 0.0, 1.0) * 255.0)
    return Image.fromarray(out)


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB with transparency composited on white, so transparent pixels don't read as black."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


PANORAMA_ASPECT = 2.0  # wider (or taller) than this, the square grid cells would crop away most of it
LETTERBOX = (238, 238, 238)  # neutral, and the grid's own cell background


def letterbox(img: Image.Image, size: int) -> Image.Image:
    """``img`` fit whole inside a square of at most ``size`` pixels, on the neutral background."""
    thumb = img.copy()
    thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
    side = max(thumb.size)
    box = Image.new("RGB", (side, side), LETTERBOX)
    box.paste(thumb, ((side - thumb.width) // 2, (side - thumb.height) // 2))
    return box


def model_view(img: Image.Image) -> Image.Image:
    """What the model is shown: the image itself, or, past :data:`MAX_ASPECT`, letterboxed."""
    width, height = img.size
    if max(width, height) > MAX_ASPECT * min(width, height):
        return letterbox(img, MODEL_VIEW_SIDE)
    return img


THUMBNAIL_FORMAT = "JPEG"  # ~20x cheaper to encode than WebP at a thumbnail's size, and every browser shows it
THUMBNAIL_QUALITY = 80


def thumbnail_bytes(img: Image.Image, size: int) -> bytes:
    """A JPEG thumbnail whose longer side is at most ``size`` pixels.

    A panorama is letterboxed: fit whole inside a ``size`` x ``size`` square on a neutral
    background, so a square grid cell shows all of it rather than a sliver of its middle.
    ``img`` is usually the draft-decoded image the model input is made from, so no second decode.
    """
    width, height = img.size
    if max(width, height) > PANORAMA_ASPECT * min(width, height):
        thumb = letterbox(img, size)
    else:
        thumb = img.copy()
        # reducing_gap=1: a box-filter reduce by the integer factor first (a 2x draft to 256 px is
        # only that), LANCZOS for the rest; about 5x cheaper than LANCZOS all the way.
        thumb.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=1.0)
    out = io.BytesIO()
    thumb.save(out, THUMBNAIL_FORMAT, quality=THUMBNAIL_QUALITY)
    return out.getvalue()
