"""The ONNX Runtime encoder: a model's exported towers, run without torch.

Made by :func:`labeler.encoder.load_encoder` for the ``fp32`` and ``int8`` modes. It has the
torch encoder's interface (``dim``, ``logit_scale``, ``image_size``, ``preprocess``,
``encode_images``, ``encode_texts``); the text tower is loaded on the first text, so indexing
never holds it in memory.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .preprocessing import numpy_preprocess
from .scoring import unit


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # its warnings about unused initialisers are not the user's
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxEncoder:
    """An exported model in ``folder`` (see :mod:`labeler.onnx_export`); ``int8`` picks the quantised towers."""

    device = "cpu"

    def __init__(self, spec: str, folder: Path, meta: dict, mode: str):
        self.spec = spec
        self.mode = mode
        self.folder = folder
        self.meta = meta
        self.dim = int(meta["dim"])
        self.logit_scale = float(meta["logit_scale"])
        self.image_size = int(meta["image_size"])
        self.preprocess: Callable = numpy_preprocess(meta["preprocess_cfg"], self.image_size)
        self._suffix = ".int8.onnx" if mode == "int8" else ".onnx"
        self._image = _session(folder / f"image{self._suffix}")
        self._text = None
        self._tokenizer = None
        self._text_lock = threading.Lock()

    @property
    def preprocess_info(self) -> dict:
        return {"image_size": self.image_size, "transform": self.meta["preprocess_repr"]}

    def encode_images(self, batch) -> np.ndarray:
        """``batch``: ``[N, 3, H, W]`` (numpy or torch) or a list of ``[3, H, W]`` → ``[N, D]``."""
        if isinstance(batch, (list, tuple)):
            batch = np.stack([np.asarray(b, dtype=np.float32) for b in batch])
        pixels = np.ascontiguousarray(np.asarray(batch, dtype=np.float32))
        return unit(self._image.run(None, {"pixels": pixels})[0].astype(np.float32))

    def tokenize(self, texts: Sequence[str]) -> np.ndarray:
        """Texts → int64 token ids ``[N, context_length]``; torch only for tokenizers CLIP's BPE is not."""
        with self._text_lock:
            if self._tokenizer is None:
                info = self.meta["tokenizer"]
                if info["kind"] == "clip-bpe":
                    from .tokenizer import ClipTokenizer

                    self._tokenizer = ClipTokenizer(info["context_length"], info["clean"])
                else:
                    import open_clip

                    from .encoder import parse_model_spec

                    tok = open_clip.get_tokenizer(parse_model_spec(self.spec).name)
                    self._tokenizer = lambda t: tok(list(t)).numpy()
        return self._tokenizer(list(texts))

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Texts → ``[N, D]`` unit vectors."""
        with self._text_lock:
            if self._text is None:
                self._text = _session(self.folder / f"text{self._suffix}")
        out = [self._text.run(None, {"tokens": self.tokenize(texts[start:start + batch_size])})[0]
               for start in range(0, len(texts), batch_size)]
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return unit(np.concatenate(out).astype(np.float32))
