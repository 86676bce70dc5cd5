"""The workshop world: a procedural, deterministic image generator with ground truth.

Every image shows one object (a tool or a household distractor) built from parts,
with a known concept, colour, material, handle, size and context. Image ``i`` of a
world depends only on ``(seed, i)``, so a world of 100 images is a prefix of a world
of 10,000. The demo model ``labeler-tiny`` is trained on captions made from this
truth (see :func:`caption_specs`), and ``prompt_sets/workshop.yaml`` labels it.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CONCEPTS: tuple[str, ...] = (
    "hammer", "screwdriver", "wrench", "pliers", "saw", "paintbrush",
    "mug", "apple", "ball", "book",
)
TOOLS: tuple[str, ...] = CONCEPTS[:6]
COLORS: tuple[str, ...] = ("red", "blue", "green", "yellow", "orange", "purple", "black", "white")
MATERIALS: tuple[str, ...] = ("metal", "wood", "plastic", "rubber")
HANDLES: tuple[str, ...] = ("wooden", "plastic", "rubber", "metal", "none")
SIZES: tuple[str, ...] = ("small", "medium", "large")
CONTEXTS: tuple[str, ...] = ("plain", "toolbox", "workbench", "pegboard")
TRUTH_COLUMNS: tuple[str, ...] = (
    "file", "concept", "color", "material", "handle", "size", "context", "caption", "orientation", "palette",
    "function",
)
# Never in a caption, so labeler-tiny was never told of them: groups only reviews can teach.
# Both are derived from draws the generator already makes, so images stay byte-identical.
ORIENTATIONS: tuple[str, ...] = ("horizontal", "vertical")
PALETTES: dict[str, str] = {
    "red": "warm", "orange": "warm", "yellow": "warm",
    "blue": "cool", "green": "cool", "purple": "cool",
    "black": "neutral", "white": "neutral",
}

# The study's fourth attribute: what the object is for, derived from the concept (so images stay
# byte-identical). Screwdrivers and wrenches both turn things.
FUNCTION_OF: dict[str, str] = {
    "hammer": "striking", "screwdriver": "turning", "wrench": "turning", "pliers": "gripping",
    "saw": "cutting", "paintbrush": "painting", "mug": "holding liquid", "apple": "eating",
    "ball": "playing", "book": "reading",
}

FUNCTIONS: dict[str, tuple[str, ...]] = {
    "hammer": ("a tool for driving nails", "a tool for hitting nails into wood"),
    "screwdriver": ("a tool for turning screws", "a tool for driving screws"),
    "wrench": ("a tool for turning nuts and bolts", "a tool for tightening bolts"),
    "pliers": ("a tool for gripping and bending wire", "a tool for gripping small things"),
    "saw": ("a tool for cutting wood", "a tool for cutting planks"),
    "paintbrush": ("a tool for painting walls", "a brush for applying paint"),
    "mug": ("a cup for drinking coffee", "a cup for hot drinks"),
    "apple": ("a fruit to eat", "a fresh fruit for a snack"),
    "ball": ("a toy for playing catch", "a ball for games"),
    "book": ("something to read", "pages to read with a cover"),
}

_RGB: dict[str, tuple[int, int, int]] = {
    "red": (205, 35, 35), "blue": (35, 75, 210), "green": (40, 155, 55),
    "yellow": (235, 205, 35), "orange": (240, 125, 25), "purple": (135, 50, 175),
    "black": (38, 38, 40), "white": (238, 238, 236),
}
_MATERIAL_WORD = {"metal": "metal", "wood": "wooden", "plastic": "plastic", "rubber": "rubber"}
_SIZE_SCALE = {"small": (0.36, 0.42), "medium": (0.56, 0.64), "large": (0.80, 0.88)}
_CONTEXT_PHRASE = {
    "plain": "on a plain background", "toolbox": "in a toolbox",
    "workbench": "on a workbench", "pegboard": "on a pegboard",
}
_JPEG_SHARE = 0.15


@dataclass(frozen=True)
class Part:
    """One flat part of an object, as a polygon in object coordinates (length 1 along u)."""

    points: tuple[tuple[float, float], ...]
    role: str  # "body" (colour + material), "handle", or a fixed finish: "steel", "stem", "paper"


def _rect(u0: float, u1: float, v0: float, v1: float) -> tuple[tuple[float, float], ...]:
    return ((u0, v0), (u1, v0), (u1, v1), (u0, v1))


def _ellipse(cu: float, cv: float, ru: float, rv: float, n: int = 28,
             a0: float = 0.0, a1: float = 2 * math.pi) -> tuple[tuple[float, float], ...]:
    return tuple((cu + ru * math.cos(a0 + (a1 - a0) * k / n), cv + rv * math.sin(a0 + (a1 - a0) * k / n))
                 for k in range(n + 1))


def _parts(concept: str) -> list[Part]:
    """Shape of each concept, drawn as parts over u in [-0.5, 0.5]."""
    if concept == "hammer":
        return [Part(_rect(-0.5, 0.30, -0.06, 0.06), "handle"),
                Part(((0.18, -0.30), (0.44, -0.30), (0.44, 0.16), (0.36, 0.26), (0.26, 0.26), (0.18, 0.16)), "body")]
    if concept == "screwdriver":
        return [Part(_rect(-0.5, -0.08, -0.11, 0.11), "handle"),
                Part(((-0.08, -0.075), (0.40, -0.075), (0.50, -0.02), (0.50, 0.02), (0.40, 0.075), (-0.08, 0.075)), "body")]
    if concept == "wrench":
        jaw = _ellipse(0.36, 0.0, 0.15, 0.17, a0=0.9, a1=2 * math.pi - 0.9)
        return [Part(_rect(-0.46, 0.26, -0.08, 0.08), "body"),
                Part(jaw + ((0.30, -0.05), (0.30, 0.05)), "body"),
                Part(_ellipse(-0.44, 0.0, 0.09, 0.11), "body"),
                Part(_rect(-0.34, 0.08, -0.10, 0.10), "handle")]
    if concept == "pliers":
        return [Part(((0.0, -0.10), (0.5, -0.02), (0.5, 0.02), (0.0, 0.10)), "body"),
                Part(_ellipse(0.0, 0.0, 0.09, 0.09), "body"),
                Part(((0.0, -0.04), (-0.5, -0.26), (-0.5, -0.14), (0.0, 0.06)), "handle"),
                Part(((0.0, 0.04), (-0.5, 0.26), (-0.5, 0.14), (0.0, -0.06)), "handle")]
    if concept == "saw":
        teeth = tuple((0.5 - k * 0.05, 0.16 + 0.04 * (k % 2)) for k in range(15))
        return [Part(((-0.22, -0.16), (0.5, -0.06)) + teeth + ((-0.22, 0.18),), "body"),
                Part(_rect(-0.5, -0.20, -0.22, 0.20), "handle")]
    if concept == "paintbrush":
        return [Part(_rect(-0.5, 0.04, -0.05, 0.05), "handle"),
                Part(_rect(0.04, 0.18, -0.10, 0.10), "steel"),
                Part(((0.18, -0.13), (0.46, -0.16), (0.50, 0.0), (0.46, 0.16), (0.18, 0.13)), "body")]
    if concept == "mug":
        return [Part(_ellipse(0.30, 0.0, 0.20, 0.20, n=20, a0=-1.6, a1=1.6)
                     + _ellipse(0.30, 0.0, 0.09, 0.09, n=12, a0=1.6, a1=-1.6), "body"),
                Part(_rect(-0.36, 0.30, -0.40, 0.40), "body")]
    if concept == "apple":
        return [Part(_ellipse(0.0, 0.04, 0.40, 0.37), "body"),
                Part(_rect(-0.03, 0.03, -0.46, -0.28), "stem")]
    if concept == "ball":
        return [Part(_ellipse(0.0, 0.0, 0.44, 0.44), "body")]
    if concept == "book":
        return [Part(_rect(-0.34, 0.34, -0.45, 0.45), "body"),
                Part(_rect(0.24, 0.32, -0.42, 0.42), "paper"),
                Part(_rect(-0.34, -0.26, -0.45, 0.45), "body")]
    raise ValueError(f"unknown concept {concept!r}")


def _has_handle(concept: str) -> bool:
    return any(p.role == "handle" for p in _parts(concept))


def _sample_truth(rng: np.random.Generator) -> dict[str, str]:
    """Draw one object's attributes; tools lean to metal heads and hammers to wooden handles."""
    concept = CONCEPTS[rng.integers(len(CONCEPTS))]
    color = COLORS[rng.integers(len(COLORS))]
    mat_p = [0.46, 0.18, 0.18, 0.18] if concept in TOOLS else [0.25] * 4
    material = MATERIALS[rng.choice(4, p=mat_p)]
    if _has_handle(concept):
        handle_p = [0.46, 0.18, 0.18, 0.18] if concept == "hammer" else [0.25] * 4
        handle = HANDLES[rng.choice(4, p=handle_p)]
    else:
        handle = "none"
    size = SIZES[rng.integers(len(SIZES))]
    context = CONTEXTS[rng.integers(len(CONTEXTS))]
    return {"concept": concept, "color": color, "material": material, "handle": handle,
            "size": size, "context": context}


def orientation(concept: str, angle: float) -> str:
    """How a tool lies: along its long axis (u, at ``angle``) closer to the image's x or y axis.

    Empty for the household objects, whose long axis is not their drawing axis (or, for the ball,
    which has none).
    """
    if concept not in TOOLS:
        return ""
    return ORIENTATIONS[0] if abs(math.cos(angle)) >= abs(math.sin(angle)) else ORIENTATIONS[1]


def describe(row: dict[str, str]) -> str:
    """The full caption of one truth row, e.g. 'a small red metal hammer with a wooden handle in a toolbox'."""
    text = f"a {row['size']} {row['color']} {_MATERIAL_WORD[row['material']]} {row['concept']}"
    if row["handle"] != "none":
        text += f" with a {row['handle']} handle"
    return f"{text} {_CONTEXT_PHRASE[row['context']]}"


# ---------------------------------------------------------------- rendering

def _background(context: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """[size, size, 3] float32 in 0..255."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if context == "plain":
        base = np.array([212, 214, 218], np.float32) + rng.uniform(-12, 12, 3)
        img = base * (1.0 + 0.06 * (yy - 0.5))[..., None]
    elif context == "toolbox":
        img = np.empty((size, size, 3), np.float32)
        img[:] = np.array([62, 64, 68], np.float32) + rng.uniform(-8, 8)
        w = int(size * rng.uniform(0.12, 0.16))
        wall = np.array([196, 28, 30], np.float32) * rng.uniform(0.85, 1.05)
        for sl in (np.s_[:w, :], np.s_[-w:, :], np.s_[:, :w], np.s_[:, -w:]):
            img[sl] = wall
        img[w - 2:w, w:-w] = 30  # inner lip shadow
        lx = int(size * 0.4)
        img[: max(2, w // 3), lx:size - lx] = 200  # metal latch
    elif context == "workbench":
        plank = max(6, int(size * rng.uniform(0.18, 0.24)))
        tone = np.array([168, 112, 62], np.float32) * rng.uniform(0.9, 1.08)
        phase = rng.uniform(0, 6.3)
        grain = 0.9 + 0.08 * np.sin(xx * 40 + 3 * np.sin(yy * 9 + phase)) + 0.05 * np.sin(yy * size * 1.3)
        img = tone * grain[..., None]
        shift = rng.integers(plank)
        img[((np.arange(size) + shift) % plank) < 2] *= 0.5
    elif context == "pegboard":
        img = np.empty((size, size, 3), np.float32)
        img[:] = np.array([214, 186, 140], np.float32) * rng.uniform(0.92, 1.05)
        step = max(5, int(size * 0.085))
        off = rng.integers(step, size=2)
        holes = ((np.arange(size)[:, None] + off[0]) % step < 2) & ((np.arange(size)[None, :] + off[1]) % step < 2)
        img[holes] = 55
    else:
        raise ValueError(f"unknown context {context!r}")
    return img


def _texture(material: str, rgb: np.ndarray, u: np.ndarray, t: np.ndarray, v_px: np.ndarray,
             rng: np.random.Generator) -> np.ndarray:
    """Colour a part: u runs along the object, t across the part (0..1), v_px across it in pixels.

    Returns [H, W, 3] float32 in 0..255.
    """
    # The four finishes must stay apart after the model's 2x downscale: metal is greyish with a
    # bright band, wood has broad dark grain, plastic is flat and saturated, rubber is dull and dark.
    if material == "metal":  # desaturated cross gradient + a broad specular band
        grey = rgb * 0.6 + rgb.mean() * 0.4
        shade = 0.5 + 0.6 * t
        spec = np.exp(-((t - 0.3) / 0.12) ** 2)[..., None]
        return (grey * shade[..., None]) * (1 - 0.9 * spec) + 255 * 0.9 * spec
    if material == "wood":  # grain stripes ~10 px apart, dark and broad enough to survive the downscale
        phase = rng.uniform(0, 6.3)
        grain = 0.5 + 0.5 * (0.5 + 0.5 * np.sin(v_px * 0.63 + 2.0 * np.sin(u * 9 + phase)))
        return rgb * grain[..., None] * 0.95 + np.array([40, 24, 8], np.float32) * (1 - grain[..., None])
    if material == "plastic":  # flat, bright and saturated (the gloss spot is added by the caller)
        vivid = np.clip(rgb + (rgb - rgb.mean()) * 0.25, 0, 255)
        return np.broadcast_to(vivid, u.shape + (3,)).astype(np.float32)
    if material == "rubber":  # dull and dark with coarse 4-px mottling
        quarter = rng.uniform(-1, 1, ((u.shape[0] + 3) // 4, (u.shape[1] + 3) // 4)).astype(np.float32)
        mottle = np.repeat(np.repeat(quarter, 4, 0), 4, 1)[: u.shape[0], : u.shape[1]]
        return rgb * (0.5 + 0.08 * mottle)[..., None] + 12
    raise ValueError(f"unknown material {material!r}")


_FIXED_RGB = {"wooden": (165, 110, 58), "rubber": (40, 40, 42), "metal": (175, 176, 182),
              "steel": (180, 182, 188), "stem": (90, 60, 30), "paper": (245, 242, 230)}


def render(seed: int, index: int, size: int = 128) -> tuple[Image.Image, dict[str, str], str]:
    """Render image ``index`` of world ``seed``: (RGB image [size, size], truth row without file, 'png'|'jpg')."""
    rng = np.random.default_rng([seed, index])
    row = _sample_truth(rng)
    row["caption"] = describe(row)
    row["palette"] = PALETTES[row["color"]]
    row["function"] = FUNCTION_OF[row["concept"]]
    img = _background(row["context"], size, rng)

    lo, hi = _SIZE_SCALE[row["size"]]
    scale = size * rng.uniform(lo, hi)
    angle = rng.uniform(0, 2 * math.pi)
    margin = 0.5 * scale * 0.75
    cx = size / 2 + rng.uniform(-1, 1) * max(0.0, size / 2 - margin - 4) * 0.5
    cy = size / 2 + rng.uniform(-1, 1) * max(0.0, size / 2 - margin - 4) * 0.5
    ca, sa = math.cos(angle), math.sin(angle)
    row["orientation"] = orientation(row["concept"], angle)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    u = ((xx - cx) * ca + (yy - cy) * sa) / scale
    v = (-(xx - cx) * sa + (yy - cy) * ca) / scale
    body_rgb = np.clip(np.array(_RGB[row["color"]], np.float32) + rng.uniform(-14, 14, 3), 0, 255)

    outline = Image.new("L", (size, size), 0)
    odraw = ImageDraw.Draw(outline)
    for part in _parts(row["concept"]):
        pts = [(cx + scale * (pu * ca - pv * sa), cy + scale * (pu * sa + pv * ca)) for pu, pv in part.points]
        mask_img = Image.new("L", (size, size), 0)
        ImageDraw.Draw(mask_img).polygon(pts, fill=255)
        mask = np.asarray(mask_img, np.float32)[..., None] / 255.0
        odraw.polygon(pts, outline=255)
        pv = np.array([p[1] for p in part.points])
        t = np.clip((v - pv.min()) / max(1e-6, pv.max() - pv.min()), 0, 1)
        if part.role == "body":
            tex = _texture(row["material"], body_rgb, u, t, v * scale, rng)
            if row["material"] == "plastic":  # gloss spot near the part's centre
                pu = np.array([p[0] for p in part.points])
                du = (u - (pu.min() * 0.4 + pu.max() * 0.6)) / max(0.05, pu.max() - pu.min())
                spot = np.exp(-(du ** 2 + ((t - 0.3) / 0.6) ** 2) / 0.02)[..., None]
                tex = tex * (1 - 0.7 * spot) + 255 * 0.7 * spot
        elif part.role == "handle":
            handle = row["handle"]
            if handle == "plastic":  # plastic grips share the object's colour
                tex = _texture("plastic", body_rgb * 0.9, u, t, v * scale, rng)
            else:
                mat = {"wooden": "wood", "rubber": "rubber", "metal": "metal"}[handle]
                tex = _texture(mat, np.array(_FIXED_RGB[handle], np.float32), u, t, v * scale, rng)
        else:
            finish = "metal" if part.role == "steel" else "plastic"
            tex = _texture(finish, np.array(_FIXED_RGB[part.role], np.float32), u, t, v * scale, rng)
        img = img * (1 - mask) + tex * mask

    edge = np.asarray(outline, np.float32)[..., None] / 255.0
    img = img * (1 - 0.55 * edge)
    # lighting: global gain plus a soft directional ramp, then sensor noise
    la = rng.uniform(0, 2 * math.pi)
    ramp = ((xx - size / 2) * math.cos(la) + (yy - size / 2) * math.sin(la)) / size
    img = img * (rng.uniform(0.88, 1.1) + 0.12 * ramp)[..., None]
    img = img + rng.normal(0, rng.uniform(1.5, 5.0), img.shape)
    fmt = "jpg" if rng.random() < _JPEG_SHARE else "png"
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB"), row, fmt


def encode(image: Image.Image, fmt: str) -> bytes:
    """The bytes of one world image as written to disk (deterministic)."""
    buf = io.BytesIO()
    if fmt == "jpg":
        image.save(buf, format="JPEG", quality=90)
    else:
        image.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def generate_world(out_dir: Path, count: int, seed: int, size: int = 128,
                   progress: Callable[[int], None] | None = None) -> Path:
    """Write ``count`` images and ``truth.csv`` into ``out_dir``; return the truth.csv path.

    ``progress``, if given, is called with the number of images written so far.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    truth_path = out_dir / "truth.csv"
    with truth_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=TRUTH_COLUMNS)
        writer.writeheader()
        for i in range(count):
            image, row, fmt = render(seed, i, size)
            name = f"img_{i:05d}.{fmt}"
            (out_dir / name).write_bytes(encode(image, fmt))
            writer.writerow({"file": name, **row})
            if progress is not None and ((i + 1) % 25 == 0 or i + 1 == count):
                progress(i + 1)
    return truth_path


def read_truth(truth_path: Path) -> list[dict[str, str]]:
    """Rows of a truth.csv as dicts keyed by TRUTH_COLUMNS."""
    with Path(truth_path).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------- captions

def caption_specs(row: dict[str, str], rng: np.random.Generator) -> list[tuple[str, dict[str, str]]]:
    """One caption per caption form for a truth row, each with the attributes it asserts.

    The asserted attributes let training treat every image that satisfies a caption as
    a positive for it (many images share 'something red').
    """
    c, col, mat, han, siz, ctx = (row[k] for k in ("concept", "color", "material", "handle", "size", "context"))
    mw, cp = _MATERIAL_WORD[mat], _CONTEXT_PHRASE[ctx]
    def pick(*options):
        return options[rng.integers(len(options))]

    with_handle = f" with a {han} handle" if han != "none" else ""
    handle_phrase = f"something with a {han} handle" if han != "none" else pick(
        "something without a handle", "an object with no handle")
    ctx_only = pick(f"a photo {cp}", f"something {cp}") if ctx != "plain" else pick(
        "a photo on a plain background", "something on a plain background")
    return [
        (pick(f"a {c}", f"a photo of a {c}"), {"concept": c}),
        (f"a {col} {mw} {c}{with_handle}", {"concept": c, "color": col, "material": mat, "handle": han}),
        (f"a {mw} {c}{with_handle}", {"concept": c, "material": mat, "handle": han}),
        (f"a {c} {cp}", {"concept": c, "context": ctx}),
        (pick(*FUNCTIONS[c]), {"concept": c}),
        (pick(f"something {col}", f"a {col} object", f"a photo of something {col}"), {"color": col}),
        (pick(f"something made of {'wood' if mat == 'wood' else mat}", f"a {mw} object"), {"material": mat}),
        (pick(f"a {siz} object", f"a {siz} object in the photo"), {"size": siz}),
        (ctx_only, {"context": ctx}),
        (handle_phrase, {"handle": han}),
        pick((f"a {col} {c}", {"concept": c, "color": col}),
             (f"a {siz} {c}", {"concept": c, "size": siz}),
             (f"a {siz} {col} {c} {cp}", {"concept": c, "color": col, "size": siz, "context": ctx})),
        (describe(row), {"concept": c, "color": col, "material": mat, "handle": han, "size": siz, "context": ctx}),
    ]


def captions_for(row: dict[str, str], rng: np.random.Generator) -> list[str]:
    """The captions of one truth row, one per caption form (see :func:`caption_specs`)."""
    return [text for text, _ in caption_specs(row, rng)]
