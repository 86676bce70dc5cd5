"""Exporting a model's image and text towers to ONNX, once per model, into the labeler home.

An export lives in ``CACHE/NAME-KEY/``: ``image.onnx`` and ``text.onnx`` (fp32), their dynamic
int8 versions when the int8 mode asked for them (``TOWER.int8-RECIPE.onnx``, with the recipe
chosen per CPU kind in ``int8.json``: :mod:`labeler.encoding.int8`), and ``meta.json``
(dimension, logit scale, preprocessing, tokenizer), so that a later run loads it without
importing torch at all.

``KEY`` is a hash of the architecture and the weights file's contents (a hub tag is its own
key: its weights never change under one tag); the file's hash is remembered by its path, size
and mtime in ``CACHE/weights.json``, so it is read once, not on every start.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Callable

from ..errors import ModelUnavailable
from .preprocessing import exact_port

ExportProgress = Callable[[str], None]  # one line per step of a first export
META = "meta.json"
FORMAT = 1  # bump when the files or meta.json change shape: old exports are then redone


def weights_files(name: str, pretrained: str | None) -> list[Path]:
    """The local files whose contents define the model (config and weights); [] for a hub tag."""
    if name.startswith("local-dir:"):
        folder = Path(name[len("local-dir:"):]).expanduser()
        return sorted(p for p in folder.glob("*") if p.name == "open_clip_config.json"
                      or p.name.startswith(("open_clip_model.", "open_clip_pytorch_model.")))
    if pretrained and Path(pretrained).expanduser().is_file():
        return [Path(pretrained).expanduser()]
    return []


def _file_hash(path: Path, cache_dir: Path) -> str:
    """sha256 of ``path``'s contents, remembered by (path, size, mtime)."""
    st = path.stat()
    stamp = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    known_file = cache_dir / "weights.json"
    try:
        known = json.loads(known_file.read_text())
    except (OSError, ValueError):
        known = {}
    if stamp in known:
        return known[stamp]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    known[stamp] = digest.hexdigest()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = known_file.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(known, indent=0))
    os.replace(tmp, known_file)
    return known[stamp]


def export_dir(cache_dir: Path, name: str, pretrained: str | None) -> Path:
    """Where the export of this architecture and these weights lives (it may not exist yet)."""
    files = weights_files(name, pretrained)
    if name.startswith("local-dir:"):
        what = [_file_hash(p, cache_dir) for p in files] or [name]
    else:  # ARCH:/path/to/weights, ARCH:TAG or hf-hub:org/repo
        what = [name, _file_hash(files[0], cache_dir) if files else str(pretrained)]
    key = hashlib.sha256("|".join([str(FORMAT), *what]).encode()).hexdigest()[:16]
    # named by contents alone, so one model's bytes share one export wherever they are
    label = "local-dir" if name.startswith("local-dir:") else re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:48]
    return cache_dir / f"{label}-{key}"


def read_meta(folder: Path) -> dict | None:
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, ValueError):
        return None
    return meta if meta.get("format") == FORMAT else None


def export_towers(encoder, folder: Path, progress: ExportProgress | None = None) -> dict:
    """Export a loaded torch ``encoder``'s towers (fp32) and its meta into ``folder``, atomically.

    Steps: the meta (refused when the numpy preprocessing cannot reproduce the model's own),
    both towers traced into a temporary folder (:func:`trace_towers`), then one rename.
    """
    say = progress or (lambda _line: None)
    meta = tower_meta(encoder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        trace_towers(encoder.model, tmp, encoder.image_size, int(meta["tokenizer"]["context_length"]), say)
        (tmp / META).write_text(json.dumps(meta, indent=1))
        _publish(tmp, folder)
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, ModelUnavailable):
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ModelUnavailable(f"cannot export model '{encoder.spec}' to ONNX: {type(exc).__name__}: {first}. "
                               "Use --mode torch (LABELER_ENCODER_MODE=torch).") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def tower_meta(encoder) -> dict:
    """What the ONNX modes need besides the towers: dimension, logit scale, preprocessing, tokenizer.

    The numpy port must reproduce the model's own transform, or the ONNX modes are refused.
    """
    cfg = dict(getattr(encoder.model.visual, "preprocess_cfg", {}) or {})
    meta = {"format": FORMAT, "spec": encoder.spec, "dim": encoder.dim, "logit_scale": encoder.logit_scale,
            "image_size": encoder.image_size, "preprocess_repr": repr(encoder.transform),
            "preprocess_cfg": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
            "tokenizer": tokenizer_meta(encoder.tokenizer)}
    problem = exact_port(encoder.transform, meta["preprocess_cfg"], meta["image_size"])
    if isinstance(problem, str):
        raise ModelUnavailable(f"model '{encoder.spec}' cannot run in the ONNX modes: {problem}. "
                               "Use --mode torch (LABELER_ENCODER_MODE=torch).")
    return meta


def trace_towers(model, out: Path, size: int, ctx: int, say: ExportProgress) -> None:
    """Write ``image.onnx`` (pixels ``[n, 3, size, size]`` → features) and ``text.onnx`` (tokens
    ``[n, ctx]`` → features) of an open_clip ``model`` into ``out``."""
    import torch  # lazy: only a first export needs torch

    class ImageTower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, pixels):
            return self.model.encode_image(pixels)

    class TextTower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, tokens):
            return self.model.encode_text(tokens)

    # Gradients stay on while tracing: under no_grad, nn.MultiheadAttention takes its fused
    # fast path, an operator ONNX has no export for.
    with warnings.catch_warnings(), torch.enable_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notes are not the user's business
        say("exporting the image tower to ONNX")
        torch.onnx.export(ImageTower().eval(), (torch.zeros(2, 3, size, size),), str(out / "image.onnx"),
                          dynamo=False, input_names=["pixels"], output_names=["features"],
                          dynamic_axes={"pixels": {0: "n"}, "features": {0: "n"}}, opset_version=17)
        say("exporting the text tower to ONNX")
        torch.onnx.export(TextTower().eval(), (torch.zeros(2, ctx, dtype=torch.long),), str(out / "text.onnx"),
                          dynamo=False, input_names=["tokens"], output_names=["features"],
                          dynamic_axes={"tokens": {0: "n"}, "features": {0: "n"}}, opset_version=17)


def _publish(tmp: Path, folder: Path) -> None:
    """Rename the finished export into place; another process's finished export wins."""
    try:
        os.replace(tmp, folder)
    except OSError:
        if read_meta(folder) is None:
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def tokenizer_meta(tokenizer) -> dict:
    """How to rebuild ``tokenizer`` without torch: CLIP's BPE with its settings, or not at all."""
    kind = type(tokenizer).__name__
    clean = getattr(getattr(tokenizer, "clean_fn", None), "__name__", "")
    ctx = int(getattr(tokenizer, "context_length", 0) or 77)
    if kind == "SimpleTokenizer" and getattr(tokenizer, "reduction_fn", None) is None and clean in (
            "_clean_lower", "_clean_whitespace", "_clean_canonicalize") and tokenizer.vocab_size == 49408:
        return {"kind": "clip-bpe", "context_length": ctx, "clean": clean[len("_clean_"):]}
    return {"kind": "open_clip", "context_length": ctx}
