"""Float RGB TIFFs (32- or 64-bit samples, 3 or 4 per pixel), which Pillow has no mode for.

HDR merges, scientific cameras and image tools (tifffile, OpenCV) write them. Strips only, stored
raw or deflated, with or without the floating-point predictor; anything else says what it is.
"""

from __future__ import annotations

import warnings
import zlib
from typing import BinaryIO

import numpy as np
from PIL import TiffImagePlugin

NONE, DEFLATE, ADOBE_DEFLATE = 1, 32946, 8
FLOAT_PREDICTOR = 3


class NotFloatRGB(Exception):
    """The TIFF is not a float RGB one: the caller's own reason applies."""


def read_float_rgb(fp: BinaryIO, max_pixels: int) -> np.ndarray:
    """The first image of the TIFF file ``fp`` as float64 ``[height, width, 3]`` (alpha dropped).

    Raises :class:`NotFloatRGB` for any other TIFF, ``ValueError`` with the reason for a float RGB
    one that cannot be read (tiles, another compression, more pixels than ``max_pixels``).
    """
    tags = _first_ifd(fp)
    samples = _first(tags, 277, 1)
    if _first(tags, 339, 1) != 3 or samples not in (3, 4) or _first(tags, 262, 2) != 2:
        raise NotFloatRGB
    width, height, bits = _readable(tags, max_pixels)
    compression, predictor = _first(tags, 259, NONE), _first(tags, 317, 1)
    planar = _first(tags, 284, 1)
    rows_per_strip = max(1, min(_first(tags, 278, height), height))
    offsets, counts = _all(tags, 273), _all(tags, 279)
    bytes_per = bits // 8
    dtype = np.dtype(f"{'<' if fp_order(tags) == 'II' else '>'}f{bytes_per}")
    planes = samples if planar == 2 else 1
    per_pixel = 1 if planar == 2 else samples
    strips_per_plane = -(-height // rows_per_strip)
    if len(offsets) != strips_per_plane * planes or len(counts) != len(offsets):
        raise ValueError("strip tables do not match the image size")
    out = np.empty((planes, height, width * per_pixel), dtype=np.float64)
    for index, (offset, count) in enumerate(zip(offsets, counts)):
        plane, strip = divmod(index, strips_per_plane)
        top = strip * rows_per_strip
        rows = min(rows_per_strip, height - top)
        fp.seek(offset)
        data = fp.read(count)
        if compression != NONE:
            data = zlib.decompress(data)
        need = rows * width * per_pixel * bytes_per
        if len(data) < need:
            raise ValueError(f"truncated image: float RGB strip {index} has {len(data)} of {need} bytes")
        raw = np.frombuffer(data[:need], dtype=np.uint8).reshape(rows, -1)
        if predictor == FLOAT_PREDICTOR:
            out[plane, top:top + rows] = _unpredict(raw, bytes_per, per_pixel, dtype)
        else:
            out[plane, top:top + rows] = raw.view(dtype).reshape(rows, -1)
    if planar == 2:
        pixels = np.moveaxis(out, 0, -1)
    else:
        pixels = out[0].reshape(height, width, samples)
    return pixels[..., :3]


def _readable(tags, max_pixels: int) -> tuple[int, int, int]:
    """(width, height, bits per sample) of a float RGB TIFF this module reads; ``ValueError`` saying
    why for one it cannot."""
    bits = _first(tags, 258, 32)
    if bits not in (32, 64):
        raise ValueError(f"{bits}-bit float RGB samples")
    width, height = _first(tags, 256, 0), _first(tags, 257, 0)
    if width < 1 or height < 1:
        raise ValueError(f"absurd dimensions: {width}x{height}")
    if width * height > max_pixels:
        raise ValueError(f"decompression bomb: {width}x{height} exceeds LABELER_MAX_PIXELS ({max_pixels} pixels)")
    if 322 in tags:
        raise ValueError("tiled float RGB layout")
    compression, predictor = _first(tags, 259, NONE), _first(tags, 317, 1)
    if compression not in (NONE, DEFLATE, ADOBE_DEFLATE) or predictor not in (1, FLOAT_PREDICTOR):
        raise ValueError(f"float RGB with compression {compression}, predictor {predictor}")
    return width, height, bits


def _unpredict(raw: np.ndarray, bytes_per: int, stride: int, dtype: np.dtype) -> np.ndarray:
    """Undo TIFF's floating-point predictor (libtiff's ``fpAcc``): byte deltas ``stride`` (samples
    per pixel) apart along each row, over the row's bytes regrouped most significant first."""
    rows = raw.shape[0]
    # wraps mod 256, as the predictor does
    summed = np.cumsum(raw.reshape(rows, -1, stride), axis=1, dtype=np.uint8).reshape(rows, -1)
    regrouped = summed.reshape(rows, bytes_per, -1).transpose(0, 2, 1)  # [rows, samples, bytes], big-endian
    return np.ascontiguousarray(regrouped).view(f">f{bytes_per}").reshape(rows, -1).astype(dtype.newbyteorder("="))


def fp_order(tags: TiffImagePlugin.ImageFileDirectory_v2) -> str:
    return "II" if tags._endian == "<" else "MM"


def _first_ifd(fp: BinaryIO) -> TiffImagePlugin.ImageFileDirectory_v2:
    fp.seek(0)
    header = fp.read(8)
    if header[:4] not in TiffImagePlugin.PREFIXES:
        raise NotFloatRGB
    try:
        tags = TiffImagePlugin.ImageFileDirectory_v2(header)
        fp.seek(tags.next)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tags.load(fp)
    except Exception:  # a header too broken to read: not ours to explain
        raise NotFloatRGB from None
    return tags


def _first(tags, tag: int, default: int) -> int:
    value = tags.get(tag, default)
    value = value[0] if isinstance(value, tuple) and value else value
    return value if isinstance(value, int) else default


def _all(tags, tag: int) -> list[int]:
    value = tags.get(tag, ())
    return list(value) if isinstance(value, tuple) else [value]
