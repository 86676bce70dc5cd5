"""Embedded colour profiles: pixels in a wide-gamut space (Display P3, Adobe RGB, a printer's CMYK)
converted to sRGB, the space the model was trained on and the one browsers assume for thumbnails.

Without it a P3 photo's thumbnail looks washed out and its vector drifts from the same photo in sRGB.
"""

from __future__ import annotations

import functools
import io

from PIL import Image, ImageCms

# Image modes LittleCMS converts, and the mode each becomes in sRGB (alpha kept).
_OUT_MODES = {"RGB": "RGB", "RGBA": "RGBA", "CMYK": "RGB", "L": "RGB"}
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@functools.lru_cache(maxsize=32)
def _transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """The transform from the profile ``icc`` to sRGB for images of ``mode``; None when the profile
    is sRGB already, or cannot be read or used (the pixels are then taken as they are).

    NOCACHE: LittleCMS's one-pixel cache is shared by a transform's callers, and decode threads share it.
    """
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        description = (ImageCms.getProfileDescription(profile) or "").strip()
        if mode != "CMYK" and description.lower().startswith("srgb"):
            return None
        return ImageCms.buildTransform(profile, _SRGB, mode, _OUT_MODES[mode],
                                       renderingIntent=ImageCms.Intent.PERCEPTUAL, flags=ImageCms.Flags.NOCACHE)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None


def to_srgb(img: Image.Image, icc: bytes | None) -> Image.Image:
    """``img`` (decoded) converted from its embedded profile ``icc`` to sRGB; as it is when there is
    no profile, the profile is sRGB, or the mode has no conversion (its mode may then stay as it was)."""
    if not icc:
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode not in _OUT_MODES:
        return img
    transform = _transform(bytes(icc), img.mode)
    if transform is None:
        return img
    try:
        return ImageCms.applyTransform(img, transform)
    except (ImageCms.PyCMSError, ValueError):
        return img
