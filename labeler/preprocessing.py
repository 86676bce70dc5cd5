"""open_clip's image transform in numpy and PIL: resize, centre crop, scale, normalise.

The same PIL resize and the same float32 arithmetic as torchvision's ``Resize``/``CenterCrop``/
``ToTensor``/``Normalize``, so the ONNX modes need no torch; the export checks the port
against the model's own transform and refuses a model it does not reproduce.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


def numpy_preprocess(cfg: dict, image_size: int) -> Callable:
    """``cfg``: open_clip's ``preprocess_cfg`` → a function PIL image → float32 ``[3, S, S]``."""
    from PIL import Image

    mode = cfg.get("resize_mode", "shortest")
    if mode not in ("shortest", "squash"):
        raise ValueError(f"resize mode {mode!r} is not ported")
    how = cfg.get("interpolation", "bicubic")
    if how not in INTERPOLATIONS:
        raise ValueError(f"interpolation {how!r} is not ported")
    resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}[how]
    mean = np.asarray(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)), dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)), dtype=np.float32).reshape(3, 1, 1)
    size = int(image_size)

    def preprocess(img) -> np.ndarray:
        if mode == "squash":
            img = img.resize((size, size), resample)
        else:
            w, h = img.size
            short, long = (w, h) if w <= h else (h, w)
            if short != size:
                new_long = int(size * long / short)
                img = img.resize((size, new_long) if w <= h else (new_long, size), resample)
            w, h = img.size
            top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
            img = img.crop((left, top, left + size, top + size))
        if img.mode != "RGB":
            img = img.convert("RGB")
        pixels = np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        return (pixels - mean) / std

    return preprocess


def exact_port(transform, cfg: dict, image_size: int) -> Callable | str:
    """:func:`numpy_preprocess` for ``cfg`` when it reproduces ``transform`` (the model's own
    torchvision transform) value for value on tall, wide and square images; else why not."""
    from PIL import Image

    try:
        ours = numpy_preprocess(cfg, image_size)
    except ValueError as exc:
        return str(exc)
    rng = np.random.default_rng(0)
    for shape in ((97, 131, 3), (131, 97, 3), (image_size, image_size, 3)):
        img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
        theirs = transform(img).numpy()
        mine = ours(img)
        if mine.shape != theirs.shape or float(np.abs(mine - theirs).max()) > 1e-5:
            return f"its preprocessing ({cfg.get('resize_mode')}) has no exact numpy port"
    return ours
