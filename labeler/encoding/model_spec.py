"""Model specs: what a user writes after ``--model``, parsed into what open_clip's factory takes.

* ``labeler-tiny`` - the bundled demo model (``labeler/models/labeler-tiny``);
* ``local-dir:/path`` - a folder in open_clip's format (``open_clip_config.json`` + weights);
* ``ARCH:/path/to/weights`` - an open_clip architecture with a local weights file;
* ``ARCH:PRETRAINED`` - an open_clip pretrained tag, downloaded by open_clip when online;
* ``hf-hub:org/repo`` - a Hugging Face hub repo, when online.

Parsing imports neither torch nor open_clip, so the ONNX encoder and the registry use it freely.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelUnavailable
from ..resources import resource_dir

TINY_NAME = "labeler-tiny"
TINY_DIR = resource_dir("models") / TINY_NAME
DEFAULT_MODEL = TINY_NAME


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec; ``name`` and ``pretrained`` are what open_clip receives."""

    spec: str
    name: str
    pretrained: str | None = None


def looks_like_path(value: str) -> bool:
    return value.startswith((".", "/", "~")) or os.sep in value or Path(value).suffix in {
        ".pt", ".pth", ".bin", ".safetensors"}


def parse_model_spec(spec: str) -> ModelSpec:
    """Parse a user's model spec into what open_clip's factory takes."""
    spec = spec.strip()
    if not spec:
        raise ModelUnavailable("empty model spec; use e.g. labeler-tiny or ViT-B-32:laion2b_s34b_b79k")
    if spec == TINY_NAME:
        return ModelSpec(spec, f"local-dir:{TINY_DIR}")
    if spec.startswith(("local-dir:", "hf-hub:")):
        return ModelSpec(spec, spec)
    arch, sep, pretrained = spec.partition(":")
    return ModelSpec(spec, arch, pretrained if sep else None)
