"""Reading image files safely: formats, EXIF orientation, draft mode, and every way a file is bad."""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"})
MAX_SIDE = 40_000  # longer sides are absurd for a photo and a sign of a forged header
MIN_SIDE = 1  # icons and spacer GIFs (1×1, 2×2) are valid images: CLIP resizes anything
MAX_ASPECT = 50

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
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or "?"
            if fmt not in FORMATS:
                raise BadImage(f"unsupported image format {fmt}")
            width, height = img.size
            _check_dimensions(width, height, max_pixels)
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
            img = _to_rgb(img)
    except BadImage:
        raise
    except Image.DecompressionBombError as exc:
        raise BadImage(f"decompression bomb: {exc}") from None
    except Image.DecompressionBombWarning as exc:
        raise BadImage(f"decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise BadImage("not an image (unrecognised content)") from None
    except OSError as exc:
        message = str(exc) or type(exc).__name__
        if "truncated" in message.lower():
            raise BadImage(f"truncated image: {message}") from None
        raise BadImage(f"corrupt image: {message}") from None
    except (ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError, ZeroDivisionError,
            MemoryError, struct.error) as exc:
        raise BadImage(f"corrupt image: {type(exc).__name__}: {exc}") from None
    return Decoded(img, width, height, "JPEG" if fmt == "MPO" else fmt)


def _check_dimensions(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise BadImage(f"decompression bomb: {width}x{height} exceeds {max_pixels} pixels")
    if max(width, height) > MAX_SIDE or min(width, height) < MIN_SIDE or \
            max(width, height) > MAX_ASPECT * min(width, height):
        raise BadImage(f"absurd dimensions: {width}x{height}")


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


def thumbnail_bytes(img: Image.Image, size: int) -> bytes:
    """A WebP thumbnail whose longer side is at most ``size`` pixels."""
    thumb = img.copy()
    thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    thumb.save(out, "WEBP", quality=80, method=4)
    return out.getvalue()
