"""open_clip's image transform in numpy and PIL: resize, centre crop, scale, normalise.

The same PIL resize and the same float32 arithmetic as torchvision's ``Resize``/``CenterCrop``/
``ToTensor``/``Normalize``, so the ONNX modes need no torch; the export checks the port
against the model's own transform and refuses a model it does not reproduce.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


class NumpyPreprocess:
    """open_clip's transform in two halves that give the same float32 values as the whole.

    :meth:`crop` (resize and centre crop: PIL image → uint8 ``[3, S, S]``) runs where files are
    decoded; :meth:`normalise` (uint8 ``[..., 3, S, S]`` → float32, scaled and normalised) can run
    next to the model, so a distributed run hands over a quarter of the bytes. Calling it does
    both. Picklable: arrays and numbers, no closures.
    """

    def __init__(self, cfg: dict, image_size: int):
        from PIL import Image  # lazy: PIL only when an image is preprocessed, not for a text query

        self.mode = cfg.get("resize_mode", "shortest")
        if self.mode not in ("shortest", "squash"):
            raise ValueError(f"resize mode {self.mode!r} is not ported")
        how = cfg.get("interpolation", "bicubic")
        if how not in INTERPOLATIONS:
            raise ValueError(f"interpolation {how!r} is not ported")
        self.resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}[how]
        self.mean = np.asarray(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)), dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)), dtype=np.float32).reshape(3, 1, 1)
        self.size = int(image_size)

    def crop(self, img) -> np.ndarray:
        """PIL image → uint8 ``[3, S, S]``: resized and centre-cropped like torchvision."""
        size = self.size
        if self.mode == "squash":
            img = img.resize((size, size), self.resample)
        else:
            w, h = img.size
            short, long = (w, h) if w <= h else (h, w)
            if short != size:
                new_long = int(size * long / short)
                img = img.resize((size, new_long) if w <= h else (new_long, size), self.resample)
            w, h = img.size
            top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
            img = img.crop((left, top, left + size, top + size))
        if img.mode != "RGB":
            img = img.convert("RGB")
        return np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))

    def normalise(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 ``[3, S, S]`` or ``[N, 3, S, S]`` → float32 of the same shape, as ToTensor + Normalize."""
        return (pixels.astype(np.float32) / np.float32(255) - self.mean) / self.std

    def __call__(self, img) -> np.ndarray:
        """PIL image → float32 ``[3, S, S]``."""
        return self.normalise(self.crop(img))


def numpy_preprocess(cfg: dict, image_size: int) -> NumpyPreprocess:
    """``cfg``: open_clip's ``preprocess_cfg`` → a function PIL image → float32 ``[3, S, S]``."""
    return NumpyPreprocess(cfg, image_size)


def exact_port(transform, cfg: dict, image_size: int) -> Callable | str:
    """:func:`numpy_preprocess` for ``cfg`` when it reproduces ``transform`` (the model's own
    torchvision transform) value for value on tall, wide and square images; else why not."""
    from PIL import Image  # lazy: PIL only when an image is preprocessed, not for a text query

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
