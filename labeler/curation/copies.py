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

Those two are coarse, and cheap enough for every candidate pair. :func:`aligned` is the fine
check for the pairs they let through: it finds the window of one image that the other shows
(a crop) at 1/4 pixel of a 64 x 64 picture, allowing only the windows the two images' pixel
sizes admit (a copy is never upscaled, and keeps its window's shape), matches the two grey
pictures' tones (a profile change is roughly a monotone tone curve), and measures the worst
cell of a 4 x 4 grid. Two distinct discs at nearby places can look alike at 16 x 16 through a
3 x 3 grid of windows; they cannot share a window that their sizes allow, nor every cell.
"""

from __future__ import annotations

import io
from typing import NamedTuple, Sequence

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
ALIGN_SIDE = 64  # the grey picture the aligned check searches for the window on
DETAIL_SIDE = 128  # the picture the found window is cut from: two resampling paths agree at this
COMPARE_SIDE = 32  # compared at this: a resize or JPEG loses the finest detail
RESIDUAL_CELLS = 4  # the aligned grey check's grid: its worst cell decides
ALIGN_COLOUR_CELLS = 8
MIN_WINDOW = 1 - 1.5 * MAX_CROP  # the smallest window side searched: a crop of up to 8 %, and room
TONE_QUANTILES = 33  # points of the tone curve matched between two grey pictures

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
    """What the pixel checks compare of one image: its :func:`signatures` and :func:`colours`, and
    ``planes``, the image at ``DETAIL_SIDE`` x ``DETAIL_SIDE``, ``[3, 128, 128]`` uint8, and
    ``search``, its grey at ``ALIGN_SIDE`` x ``ALIGN_SIDE`` (float32), for :func:`aligned`."""

    grey: np.ndarray
    colour: np.ndarray
    planes: np.ndarray
    search: np.ndarray


def look(img: Image.Image) -> Look:
    img = img.convert("RGB")
    # bilinear, not box: PIL's box filter enlarges a small copy's thumbnail by repeating pixels
    picture = np.asarray(img.resize((DETAIL_SIDE, DETAIL_SIDE), Image.Resampling.BILINEAR), np.float32)
    planes = np.ascontiguousarray(np.moveaxis(picture, -1, 0)).astype(np.uint8)
    return Look(signatures(img), colours(img), planes, _reduce(_grey(picture), DETAIL_SIDE // ALIGN_SIDE))


# -- the aligned check ------------------------------------------------------------------------------
class Aligned(NamedTuple):
    """How two images compare once one is aligned on the other (:func:`aligned`).

    ``residual``: the worst cell's mean squared difference of the two tone-matched grey pictures,
    each zero mean and unit variance (0 for one picture; two unrelated ones average 2);
    ``colour``: the mean RGB distance (0..sqrt 3) of an 8 x 8 grid of cells; ``window``: (left,
    width, top, height) of the larger image, as fractions of its sides, that the other shows.
    Both are infinite where the two images' sizes admit no window (not a copy)."""

    residual: float
    colour: float
    window: tuple[float, float, float, float] | None


NOT_ALIGNED = Aligned(float("inf"), float("inf"), None)


def _span_matrix(start: float, length: float, n: int = ALIGN_SIDE) -> np.ndarray:
    """``[n, n]`` float32: linear interpolation taking a signal of ``n`` samples to ``n``
    samples of its span [start, start + length] (fractions of its length)."""
    u = start + (np.arange(n) + 0.5) / n * length
    x = np.clip(u * n - 0.5, 0, n - 1)
    lo = np.floor(x).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    f = (x - lo).astype(np.float32)
    m = np.zeros((n, n), np.float32)
    m[np.arange(n), lo] += 1 - f
    m[np.arange(n), hi] += f
    return m


def _reduce(w: np.ndarray, k: int) -> np.ndarray:
    """``[..., n, n]`` to ``[..., n/k, n/k]`` by k x k means."""
    h = w.shape[-1] // k
    return w.reshape(*w.shape[:-2], h, k, h, k).mean(axis=(-1, -3))


def _standard(w: np.ndarray) -> np.ndarray:
    """Rows of ``w`` ``[K, ...]`` flattened, zero mean, unit norm."""
    w = w.reshape(len(w), -1)
    w = w - w.mean(axis=1, keepdims=True)
    return w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-6)


class _Geometry(NamedTuple):
    lo_x: float
    lo_y: float
    ratio: float  # the window's height / width, as fractions, that the smaller image's shape asks
    slack: float  # how far (relative) that ratio may be off: a pixel of rounding on either side


def _geometry(big: Sequence[int], small: Sequence[int]) -> _Geometry | None:
    """The windows of an image of ``big`` (width, height) pixels that an image of ``small`` may
    be a copy of: no side enlarged (a pixel of rounding allowed), none cut below
    :data:`MIN_WINDOW`, the shape kept. None where no window fits."""
    (wa, ha), (wb, hb) = big, small
    lo_x, lo_y = max(MIN_WINDOW, (wb - 1) / wa), max(MIN_WINDOW, (hb - 1) / ha)
    ratio = (wa / ha) * (hb / wb)
    slack = 1 / min(wb, hb) + 1 / min(wa, ha) + 0.005
    if lo_x > 1 or lo_y > 1 or lo_x * ratio * (1 - slack) > 1 or ratio * (1 + slack) < lo_y:
        return None
    return _Geometry(lo_x, lo_y, ratio, slack)


def _clamp(geo: _Geometry, x0: float, sx: float, y0: float, sy: float, keep_x: bool
           ) -> tuple[float, float, float, float] | None:
    """The window nearest (x0, sx, y0, sy) that ``geo`` allows; ``keep_x``: move the height to
    fit the width, else the width to fit the height. None where none does."""
    if keep_x:
        sx = min(max(sx, geo.lo_x), 1.0)
        sy = min(max(sy, geo.lo_y, sx * geo.ratio * (1 - geo.slack)), sx * geo.ratio * (1 + geo.slack), 1.0)
    else:
        sy = min(max(sy, geo.lo_y), 1.0)
        sx = min(max(sx, geo.lo_x, sy / geo.ratio / (1 + geo.slack)), sy / geo.ratio / (1 - geo.slack), 1.0)
    if sx < geo.lo_x - 1e-9 or sy < geo.lo_y - 1e-9 or abs(sy / sx / geo.ratio - 1) > geo.slack + 1e-6:
        return None
    return (round(min(max(x0, 0.0), 1 - sx), 6), round(sx, 6), round(min(max(y0, 0.0), 1 - sy), 6), round(sy, 6))


class _Spans:
    """Span matrices, made once per span (a run compares thousands of pairs on the same grid)."""

    def __init__(self):
        self._cache: dict[tuple[float, float], np.ndarray] = {}

    def __call__(self, start: float, length: float, n: int = ALIGN_SIDE) -> np.ndarray:
        m = self._cache.get((start, length, n))
        if m is None:
            if len(self._cache) > 20_000:
                self._cache.clear()
            m = self._cache[(start, length, n)] = _span_matrix(start, length, n)
        return m


_SPANS = _Spans()


def _windows_of(grey: np.ndarray, windows: list[tuple[float, float, float, float]]) -> np.ndarray:
    """``[K, 64, 64]``: each (x0, sx, y0, sy) window of ``grey`` ``[64, 64]``."""
    rows = np.stack([_SPANS(y0, sy) for _, _, y0, sy in windows])
    cols = np.stack([_SPANS(x0, sx) for x0, sx, _, _ in windows])
    return rows @ grey @ cols.transpose(0, 2, 1)


def _search(grey: np.ndarray, target: np.ndarray, geo: _Geometry, exact: tuple[float, float] | None
            ) -> tuple[tuple[float, float, float, float], float]:
    """The window of ``grey`` (a 64 x 64 picture) that ``geo`` allows and that best correlates
    with ``target`` (``[4096]`` standardised): a grid at 2/64 (and, where ``exact`` gives the
    window's size of a crop never resized, every place of that size at 1/64), then a local
    search at 1/64, 1/128 and 1/256 of a side, the width and the height in turn."""
    step = 2 / ALIGN_SIDE
    grid = []
    for sx in np.unique(np.r_[np.arange(1.0, geo.lo_x - 1e-9, -step), geo.lo_x]):
        sy = min(max(sx * geo.ratio, geo.lo_y), 1.0)
        for x0 in np.unique(np.r_[np.arange(0, 1 - sx + 1e-9, step), 1 - sx]):
            for y0 in np.unique(np.r_[np.arange(0, 1 - sy + 1e-9, step), 1 - sy]):
                grid.append(_clamp(geo, x0, sx, y0, sy, True))
    if exact is not None:
        sx, sy = exact
        fine = 1 / ALIGN_SIDE
        grid += [_clamp(geo, x0, sx, y0, sy, True) for x0 in np.unique(np.r_[np.arange(0, 1 - sx + 1e-9, fine), 1 - sx])
                 for y0 in np.unique(np.r_[np.arange(0, 1 - sy + 1e-9, fine), 1 - sy])]
    grid = list(dict.fromkeys(w for w in grid if w is not None))
    if not grid:
        return (0.0, 1.0, 0.0, 1.0), -1.0
    scores = _standard(_windows_of(grey, grid)) @ target
    best, window = float(scores.max()), grid[int(scores.argmax())]
    for step in (1 / ALIGN_SIDE, 0.5 / ALIGN_SIDE, 0.25 / ALIGN_SIDE):
        for _ in range(3):
            moved = False
            for keep_x in (True, False):
                x0, sx, y0, sy = window
                moves = [(x0 + i * step, sx + j * step, y0, sy) if keep_x else (x0, sx, y0 + i * step, sy + j * step)
                         for i in (-1, 0, 1) for j in (-1, 0, 1)]
                near = list(dict.fromkeys(w for w in (_clamp(geo, *m, keep_x) for m in moves) if w is not None))
                scores = _standard(_windows_of(grey, near)) @ target
                if scores.max() > best + 1e-7:
                    best, window, moved = float(scores.max()), near[int(scores.argmax())], True
            if not moved:
                break
    return window, best


def _reduce_rows(m: np.ndarray, k: int) -> np.ndarray:
    """``[n, m]`` to ``[n/k, m]``: the means of each k rows."""
    return m.reshape(m.shape[0] // k, k, m.shape[1]).mean(axis=1)


def _blur(planes: np.ndarray) -> np.ndarray:
    """``[..., n, n]`` blurred by a 1-2-1 kernel each way (edges repeated)."""
    p = np.concatenate([planes[..., :1, :], planes, planes[..., -1:, :]], axis=-2)
    p = (p[..., :-2, :] + 2 * p[..., 1:-1, :] + p[..., 2:, :]) / 4
    p = np.concatenate([p[..., :1], p, p[..., -1:]], axis=-1)
    return (p[..., :-2] + 2 * p[..., 1:-1] + p[..., 2:]) / 4


def _grey(picture: np.ndarray) -> np.ndarray:
    return picture.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def aligned(a: Look, b: Look, size_a: Sequence[int], size_b: Sequence[int]) -> Aligned:
    """The fine check of two images' :func:`look` (``size_a``/``size_b``: their (width, height)
    in pixels, of the files, not the thumbnails): see :class:`Aligned`. The larger image (more
    pixels) is searched for the window the smaller one shows, and its colours fitted to the
    other's; two of one size only as a whole, each way (either may be the original: a profile
    change that clips colours cannot be undone as well as it was made), the closer way counting.
    A picture wider than 2:1 (a letterboxed thumbnail) is compared as a whole."""
    if size_a[0] * size_a[1] < size_b[0] * size_b[1]:
        a, b, size_a, size_b = b, a, size_b, size_a
    one_way = _aligned(a, b, size_a, size_b)
    if size_a[0] * size_a[1] != size_b[0] * size_b[1]:
        return one_way
    other_way = _aligned(b, a, size_b, size_a)
    return min(one_way, other_way, key=lambda found: (found.residual, found.colour))


def _aligned(a: Look, b: Look, size_a: Sequence[int], size_b: Sequence[int]) -> Aligned:
    """:func:`aligned` with ``a`` the larger image (or one of two of a size)."""
    panorama = max(max(s) / max(min(s), 1) for s in (size_a, size_b)) > 2.0
    geo = _Geometry(1.0, 1.0, 1.0, 1.0) if panorama else _geometry(size_a, size_b)
    if geo is None:
        return NOT_ALIGNED
    exact = None if panorama else (size_b[0] / size_a[0], size_b[1] / size_a[1])
    window, _ = _search(a.search, _standard(b.search[None])[0], geo, exact)
    x0, sx, y0, sy = window
    k = DETAIL_SIDE // COMPARE_SIDE  # the window cut and reduced to COMPARE_SIDE in one product
    rows = _reduce_rows(_SPANS(y0, sy, DETAIL_SIDE), k)
    cols = _reduce_rows(_SPANS(x0, sx, DETAIL_SIDE), k)
    cut = rows @ (a.planes.astype(np.float32) / 255.0) @ cols.T
    other = _reduce(b.planes.astype(np.float32) / 255.0, k)
    cells = COMPARE_SIDE // ALIGN_COLOUR_CELLS
    colour = float(np.linalg.norm(_reduce(cut, cells) - _reduce(other, cells), axis=0).mean())
    # the grey residual after the colours are matched: a profile change is a 3 x 3 matrix in
    # linear light (fitted here by least squares), then a tone curve (matched by quantiles); both
    # pictures a little blurred, as a resize blurs one more than the other
    one, two = _blur(cut).reshape(3, -1).T, _blur(other).reshape(3, -1).T
    lin_one, lin_two = _to_linear(one), _to_linear(two)
    matrix, *_ = np.linalg.lstsq(lin_one, lin_two, rcond=None)
    fitted = _to_srgb(lin_one @ matrix)
    side = COMPARE_SIDE // RESIDUAL_CELLS
    diff = ((fitted - two) ** 2).sum(axis=1).reshape(RESIDUAL_CELLS, side, RESIDUAL_CELLS, side)
    residual = float(np.sqrt(diff.mean(axis=(1, 3)).max()))
    return Aligned(residual, colour, window)


def coarse(grey_a: np.ndarray, grey_b: np.ndarray, colour_a: np.ndarray, colour_b: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`agreement` and :func:`colour_distance` of many pairs at once: ``grey_*``
    ``[P, W, 256]``, ``colour_*`` ``[P, W, 4, 4, 3]`` (the pairs' looks stacked); returns
    ``[P]`` agreements and ``[P]`` distances."""
    agree = np.maximum(np.einsum("pwd,pd->pw", grey_a, grey_b[:, 0]).max(axis=1),
                       np.einsum("pwd,pd->pw", grey_b, grey_a[:, 0]).max(axis=1))
    one = np.linalg.norm(colour_a - colour_b[:, :1], axis=-1).mean(axis=(2, 3)).min(axis=1)
    other = np.linalg.norm(colour_b - colour_a[:, :1], axis=-1).mean(axis=(2, 3)).min(axis=1)
    return agree, np.minimum(one, other)
