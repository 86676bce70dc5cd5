"""Reading image files safely: formats, EXIF orientation, draft mode, and every way a file is bad."""

from __future__ import annotations

import functools
import io
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, TiffImagePlugin, UnidentifiedImageError

from .colour import to_srgb
from .float_tiff import NotFloatRGB, read_float_rgb

EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff",
                        ".avif", ".ico"})
HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".hif"})  # decoded when the extra labeler[heif] is installed
FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO", "AVIF", "ICO", "HEIF"})
HEIF_MISSING = ("HEIC/HEIF image, and its optional decoder is not installed: "
                "pip install 'labeler[heif]' (pillow-heif), then index again")
# Image files that are left out of a walk, each with the reason listed in ``skips``.
NOT_DECODED = {
    **dict.fromkeys((".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2", ".pef", ".srw"),
                    "camera raw image: not decoded; export it as JPEG, TIFF or HEIC to index it"),
    ".svg": "vector image (SVG): not decoded; export it as PNG to index it",
    ".psd": "Photoshop document: not decoded; export it as JPEG, PNG or TIFF to index it",
}
# HEIF brands (ISO/IEC 23008-12) in the ``ftyp`` box; AVIF's (avif, avis) are Pillow's own
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1",
                          b"msf1", b"heif"})
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


@functools.lru_cache(maxsize=1)
def heif_decoder() -> bool:
    """Whether HEIC/HEIF files decode here: the extra ``labeler[heif]`` (pillow-heif) is installed;
    its Pillow plugin is registered on the first call."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def is_image_path(path: Path) -> bool:
    """Whether a walk reads the file ``path``, from its extension in any case (``.JPG``, ``.HEIC``)."""
    suffix = path.suffix.lower()
    return suffix in EXTENSIONS or (suffix in HEIF_EXTENSIONS and heif_decoder())


def left_out_reason(path: Path) -> str | None:
    """Why a walk leaves the image-like file ``path`` out (listed in ``skips``); None for any other file."""
    suffix = path.suffix.lower()
    if suffix in HEIF_EXTENSIONS and not heif_decoder():
        return HEIF_MISSING
    return NOT_DECODED.get(suffix)


def _is_heif(head: bytes) -> bool:
    """Whether the first bytes ``head`` of a file are an ISO-BMFF ``ftyp`` box naming a HEIF brand."""
    if head[4:8] != b"ftyp" or len(head) < 16:
        return False
    size = int.from_bytes(head[:4], "big")
    brands = [head[8:12]] + [head[i:i + 4] for i in range(16, min(size, len(head)) - 3, 4)]
    return bool(_HEIF_BRANDS.intersection(brands)) and not {b"avif", b"avis"}.intersection(brands[:1])


_TRANSPOSED = {5, 6, 7, 8}  # EXIF orientations that swap width and height


def decode(data: bytes | BinaryIO, max_pixels: int, draft_size: int | None = None) -> Decoded:
    """Decode ``data`` (bytes, or a seekable binary file read as it goes) into an upright RGB
    image; raise :class:`BadImage` with a reason.

    ``draft_size`` lets JPEG decode at a reduced scale that still covers that many pixels
    on the short side, which is several times faster for large photos.
    """
    source = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    source.seek(0)
    head = source.read(64)
    if not head:
        raise BadImage("empty file (0 bytes)")
    if _is_heif(head) and not heif_decoder():
        raise BadImage(HEIF_MISSING)
    source.seek(0)
    fmt = None
    # Pillow's own bomb limit follows ours (LABELER_MAX_PIXELS); past it the warning is an error.
    # Its default (89 M pixels) refused a 108-megapixel phone photo.
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(source)
            fmt = img.format or "?"
            img, width, height = _upright(img, fmt, max_pixels, draft_size)
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(f"decompression bomb: {exc}; {MAX_PIXELS_HINT}") from None
    except UnidentifiedImageError:
        return _float_rgb_tiff(source, max_pixels)
    except OSError as exc:
        raise BadImage(_os_error_reason(exc, fmt, source)) from None
    except (ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError, ZeroDivisionError,
            MemoryError, struct.error) as exc:
        raise BadImage(f"corrupt image: {type(exc).__name__}: {exc}") from None
    return Decoded(img, width, height, "JPEG" if fmt == "MPO" else fmt)


MAX_PIXELS_HINT = "raise LABELER_MAX_PIXELS to index it"


def _float_rgb_tiff(source: BinaryIO, max_pixels: int) -> Decoded:
    """A float RGB TIFF, which Pillow cannot open, read by :mod:`float_tiff`; for any other file
    Pillow did not recognise, :class:`BadImage` with the best reason known."""
    try:
        pixels = read_float_rgb(source, max_pixels)
    except NotFloatRGB:
        raise BadImage(_unidentified_reason(source)) from None
    except zlib.error as exc:
        raise BadImage(f"corrupt image: float RGB TIFF strip does not inflate: {exc}") from None
    except (ValueError, OSError) as exc:
        if str(exc).startswith(("decompression bomb", "absurd dimensions", "truncated image")):
            raise BadImage(str(exc)) from None
        raise BadImage(f"unsupported TIFF compression/layout: {exc}{_tiff_layout(source)}") from None
    height, width = pixels.shape[:2]
    return Decoded(Image.fromarray(_scaled_to_8bit(pixels, *_float_range(pixels)), "RGB"), width, height, "TIFF")


def _upright(img: Image.Image, fmt: str, max_pixels: int, draft_size: int | None
             ) -> tuple[Image.Image, int, int]:
    """An opened image decoded upright in 8-bit RGB: (image, width, height as shown)."""
    if fmt not in FORMATS:
        raise BadImage(f"unsupported image format {fmt}")
    width, height = img.size
    _check_dimensions(width, height, max_pixels)
    depth = _declared_depth(img)  # read now: exif_transpose returns a copy without the TIFF tags
    icc = img.info.get("icc_profile")
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
    # Colour managed before the thumbnail and the model input are made from it: both expect sRGB.
    return _to_rgb(to_srgb(_to_8bit(img, depth), icc)), width, height


def _os_error_reason(exc: OSError, fmt: str | None, fp: BinaryIO) -> str:
    """Why Pillow's ``OSError`` left the image undecoded."""
    message = str(exc) or type(exc).__name__
    if "truncated" in message.lower():
        return f"truncated image: {message}"
    if fmt == "TIFF":  # many compressions and layouts open but don't decode: say which
        return f"corrupt or unsupported TIFF data: {message}{_tiff_layout(fp)}"
    return f"corrupt image: {message}"


def _unidentified_reason(fp: BinaryIO) -> str:
    """Why Pillow opened no format: its own words when the file ``fp`` has a valid TIFF header.

    ``Image.open`` hides each plugin's reason behind "cannot identify image file", so a TIFF with
    a compression or sample layout Pillow lacks would read as not an image at all.
    """
    fp.seek(0)
    if fp.read(4) in TiffImagePlugin.PREFIXES and _tiff_layout(fp):
        try:
            fp.seek(0)
            TiffImagePlugin.TiffImageFile(fp)
        except Exception as exc:  # whatever the plugin raised is the reason
            message = str(exc) or type(exc).__name__
            return f"unsupported TIFF compression/layout: {message}{_tiff_layout(fp)}"
    return "not an image (unrecognised content)"


def _tiff_layout(fp: BinaryIO) -> str:
    """`` (compression C, B-bit samples, ...)`` from the first TIFF directory of the file ``fp``;
    empty when it can't be read."""
    try:
        fp.seek(0)
        ifd = TiffImagePlugin.ImageFileDirectory_v2(fp.read(8))
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
        raise BadImage(f"decompression bomb: {width}x{height} exceeds {max_pixels} pixels; {MAX_PIXELS_HINT}")
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
        low, high = _float_range(samples)
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
    return Image.fromarray(_scaled_to_8bit(samples, low, high))


def _float_range(samples: np.ndarray) -> tuple[float, float]:
    """The range float samples are shown from: [0, 1], or their own finite min-max outside it."""
    finite = samples[np.isfinite(samples)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if low >= 0.0 and high <= 1.0:
        low, high = 0.0, 1.0
    return low, high


def _scaled_to_8bit(samples: np.ndarray, low: float, high: float) -> np.ndarray:
    """``samples`` (any shape) from [low, high] to uint8, a band of rows at a time; NaN shows as ``low``."""
    out = np.empty(samples.shape, dtype=np.uint8)
    span = high - low
    for start in range(0, samples.shape[0], _WIDE_ROWS):
        rows = samples[start:start + _WIDE_ROWS].astype(np.float64)
        rows = np.nan_to_num(rows, nan=low, posinf=high, neginf=low)
        scaled = (rows - low) / span if span > 0 else np.zeros_like(rows)
        out[start:start + _WIDE_ROWS] = np.rint(np.clip(scaled, 0.0, 1.0) * 255.0)
    return out


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


# Formats every current browser shows as they are; the others (TIFF, HEIF) get a rendition.
BROWSER_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "AVIF", "ICO"})
RENDITION_SIDE = 4096  # a rendition's longer side at most: a detail page, not an archive copy
RENDITION_QUALITY = 90


def rendition_bytes(img: Image.Image, side: int = RENDITION_SIDE) -> bytes:
    """A JPEG of the decoded image ``img`` a browser shows, its longer side at most ``side`` pixels."""
    view = img.copy()
    view.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    view.save(out, "JPEG", quality=RENDITION_QUALITY)
    return out.getvalue()
