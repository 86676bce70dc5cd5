"""The ONNX Runtime encoder: a model's exported towers, run without torch.

Made by :func:`labeler.encoding.encoder.load_encoder` for the ``fp32`` and ``int8`` modes. It has the
torch encoder's interface (``dim``, ``logit_scale``, ``image_size``, ``preprocess``,
``encode_images``, ``encode_texts``). Each tower is loaded when first needed, so indexing never
holds the text tower and a text search never loads the image tower; ``prepare_images`` starts
the image tower's load (most of a second for ViT-B-32) in the background, so an ``index`` run
walks, reads and decodes its first files meanwhile.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .model_spec import parse_model_spec
from .preprocessing import numpy_preprocess
from .tokenizer import ClipTokenizer
from ..core.scoring import unit


def _in_background(load: Callable, *args) -> Future:
    """``load(*args)`` in a thread (ONNX Runtime builds a session without holding the GIL); the future
    re-raises its error where the result is needed.

    Not a daemon: the interpreter joins it before it exits, on every path (nothing to do, an error,
    Ctrl-C). A daemon thread still inside ONNX Runtime when the process tears down aborts it
    (``terminate called without an active exception``, exit 134).
    """
    future: Future = Future()

    def run() -> None:
        try:
            future.set_result(load(*args))
        except BaseException as exc:  # noqa: BLE001  (handed to whoever waits for the session)
            future.set_exception(exc)

    threading.Thread(target=run, name="labeler-onnx-load").start()
    return future


def _session(path: Path, spin: bool = True):
    """An ONNX Runtime session on every core. ``spin``: its threads busy-wait between runs (ONNX
    Runtime's default, best for a stream of batches); the text tower's do not, since a server runs
    one short search at a time and spinning threads took the CPU from its other requests."""
    import onnxruntime as ort  # lazy: ONNX Runtime loads in its own thread, after start-up

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = os.cpu_count() or 1
    options.inter_op_num_threads = 1
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # its warnings about unused initialisers are not the user's
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxEncoder:
    """An exported model in ``folder`` (see :mod:`labeler.encoding.onnx_export`); ``int8`` runs the
    quantised towers of ``recipe`` (see :mod:`labeler.encoding.int8`), ``choice`` the record of why."""

    device = "cpu"

    def __init__(self, spec: str, folder: Path, meta: dict, mode: str, recipe: str | None = None,
                 choice: dict | None = None):
        if mode == "int8" and not recipe:
            raise ValueError("the int8 mode needs a quantisation recipe")
        self.spec = spec
        self.mode = mode
        self.recipe = recipe if mode == "int8" else None
        self.choice = choice
        self.folder = folder
        self.meta = meta
        self.dim = int(meta["dim"])
        self.logit_scale = float(meta["logit_scale"])
        self.image_size = int(meta["image_size"])
        self.preprocess: Callable = numpy_preprocess(meta["preprocess_cfg"], self.image_size)
        self._suffix = f".int8-{recipe}.onnx" if mode == "int8" else ".onnx"
        self._image_path = folder / f"image{self._suffix}"
        self._image: Future | None = None
        self._image_lock = threading.Lock()
        self._text = None
        self._tokenizer = None
        self._text_lock = threading.Lock()

    @property
    def preprocess_info(self) -> dict:
        return {"image_size": self.image_size, "transform": self.meta["preprocess_repr"]}

    def prepare_images(self) -> None:
        """Start loading the image tower, if nothing has yet; :meth:`encode_images` waits for it."""
        with self._image_lock:
            if self._image is None:
                self._image = _in_background(_session, self._image_path)

    def encode_images(self, batch) -> np.ndarray:
        """``batch``: ``[N, 3, H, W]`` (numpy or torch) or a list of ``[3, H, W]`` → ``[N, D]``."""
        self.prepare_images()
        session = self._image.result()
        if isinstance(batch, (list, tuple)):
            batch = np.stack([np.asarray(b, dtype=np.float32) for b in batch])
        pixels = np.ascontiguousarray(np.asarray(batch, dtype=np.float32))
        return unit(session.run(None, {"pixels": pixels})[0].astype(np.float32))

    def tokenize(self, texts: Sequence[str]) -> np.ndarray:
        """Texts → int64 token ids ``[N, context_length]``; torch only for tokenizers CLIP's BPE is not."""
        with self._text_lock:
            if self._tokenizer is None:
                info = self.meta["tokenizer"]
                if info["kind"] == "clip-bpe":
                    self._tokenizer = ClipTokenizer(info["context_length"], info["clean"])
                else:
                    import open_clip  # lazy: open_clip imports torch; CLIP's own BPE needs neither

                    tok = open_clip.get_tokenizer(parse_model_spec(self.spec).name)
                    self._tokenizer = lambda t: tok(list(t)).numpy()
        return self._tokenizer(list(texts))

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Texts → ``[N, D]`` unit vectors."""
        with self._text_lock:
            if self._text is None:
                self._text = _session(self.folder / f"text{self._suffix}", spin=False)
        out = [self._text.run(None, {"tokens": self.tokenize(texts[start:start + batch_size])})[0]
               for start in range(0, len(texts), batch_size)]
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return unit(np.concatenate(out).astype(np.float32))
