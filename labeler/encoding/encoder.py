"""The encoder: one place that loads an open_clip model and turns images and texts into vectors.

Model specs (:mod:`labeler.encoding.model_spec`) all go through ``open_clip.create_model_and_transforms``. A spec that cannot be
loaded raises :class:`ModelUnavailable` naming the remedies; there is no silent fallback.

Modes (:data:`MODES`), chosen by ``--mode`` / ``LABELER_ENCODER_MODE``:

* ``fp32`` (default) - the towers exported once to ONNX and run by ONNX Runtime on the CPU
  (no torch import once exported); on a CUDA device, the torch model;
* ``int8`` - the same export with dynamic int8 weights (CPU), in the recipe that keeps cosine >= 0.99
  to fp32 on this CPU kind (:mod:`labeler.encoding.int8`), or refused where none does;
* ``torch`` - the open_clip model itself in fp32: the reference, and the way to any device.

``auto`` is a setting, not a mode, and a new collection's default (:data:`DEFAULT_SETTING`): it gets
``int8`` where this CPU kind's int8 recipe keeps its promise and its labels agree with fp32's
(:func:`labeler.encoding.int8.agrees`), else ``fp32`` (:func:`resolve_auto`); the collection
records the mode it got. An encoder loaded without a mode is ``fp32`` (:data:`DEFAULT_MODE`).

``fp32`` and ``torch`` give the same vectors (cosine >= 0.9999): both are stored as ``fp32``
(:func:`vector_kind`); ``int8`` vectors are kept apart from them.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import ModelUnavailable
from . import runtimes
from .model_spec import TINY_NAME, ModelSpec, looks_like_path, parse_model_spec
from .preprocessing import exact_port
from ..core.scoring import unit

MODES = ("fp32", "int8", "torch")
AUTO_MODE = "auto"  # a setting that resolves to int8 or fp32 per model and CPU kind (resolve_auto)
MODE_SETTINGS = (*MODES, AUTO_MODE)
DEFAULT_MODE = "fp32"  # an encoder loaded without a mode (load_encoder)
# a new collection's, where neither --mode nor LABELER_ENCODER_MODE names one: int8 agreed with fp32's
# labels on >= 99.5% of a demo world's on AVX2 and on AVX-512 with VNNI (README, "int8 as the default?")
DEFAULT_SETTING = AUTO_MODE

REMEDIES = (
    "Fix it in one of three ways: (1) connect to the network once so open_clip can download "
    "'{spec}' into its cache; (2) point at a local weights file: --model ARCH:/path/to/weights.pt; "
    "(3) point at a local model folder: --model local-dir:/path (or use the bundled --model labeler-tiny)."
)


def _check_available(parsed: ModelSpec) -> None:
    """Fail early, with the remedies, where open_clip would fail deep inside or download."""
    import open_clip  # lazy: open_clip imports torch, which the ONNX modes never load

    if parsed.name.startswith("local-dir:"):
        folder = Path(parsed.name[len("local-dir:"):]).expanduser()
        if not (folder / "open_clip_config.json").is_file():
            raise ModelUnavailable(
                f"model folder {folder} has no open_clip_config.json. " + REMEDIES.format(spec=parsed.spec))
        if not any(folder.glob("open_clip_model.*")) and not any(folder.glob("open_clip_pytorch_model.*")):
            hint = " Train it with scripts/train_demo_model.py." if parsed.spec == TINY_NAME else ""
            raise ModelUnavailable(f"model folder {folder} has no weights.{hint} " + REMEDIES.format(spec=parsed.spec))
        return
    if parsed.name.startswith("hf-hub:"):
        return
    if parsed.name not in open_clip.list_models():
        raise ModelUnavailable(f"unknown open_clip architecture '{parsed.name}' in model spec '{parsed.spec}'")
    if parsed.pretrained is None:
        raise ModelUnavailable(
            f"model spec '{parsed.spec}' names no weights; use ARCH:PRETRAINED or ARCH:/path/to/weights. "
            + REMEDIES.format(spec=parsed.spec))
    if looks_like_path(parsed.pretrained):
        if not Path(parsed.pretrained).expanduser().is_file():
            raise ModelUnavailable(
                f"weights file {parsed.pretrained} does not exist. " + REMEDIES.format(spec=parsed.spec))
    elif parsed.pretrained not in open_clip.list_pretrained_tags_by_model(parsed.name):
        known = ", ".join(open_clip.list_pretrained_tags_by_model(parsed.name)) or "none"
        raise ModelUnavailable(
            f"open_clip has no pretrained tag '{parsed.pretrained}' for {parsed.name} (known: {known})")
    elif not _hub_cached(parsed) and not _hub_reachable():
        raise ModelUnavailable(
            f"weights for '{parsed.spec}' are not cached and the model hub is unreachable (offline). "
            + REMEDIES.format(spec=parsed.spec))


def _hub_cached(parsed: ModelSpec) -> bool:
    """Whether open_clip's download for this tag is already in the local cache."""
    import open_clip  # lazy: open_clip imports torch, which the ONNX modes never load

    cfg = open_clip.get_pretrained_cfg(parsed.name, parsed.pretrained) or {}
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache  # lazy: the hub client only when weights are looked up

        repo = cfg["hf_hub"].rstrip("/")
        return any(isinstance(try_to_load_from_cache(repo, name), str)
                   for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"))
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clip"
    return bool(cfg.get("url")) and (cache / Path(cfg["url"]).name).exists()


def _hub_reachable(host: str = "huggingface.co") -> bool:
    """A cheap name lookup, so an offline machine fails at once instead of after retries."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def pick_device(requested: str | None = None) -> str:
    import torch  # lazy: torch only in the torch mode or for a first ONNX export

    if requested:
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


class Encoder:
    """A loaded open_clip model. Vectors are float32 and unit-normalised.

    ``preprocess`` turns a PIL image into a ``[3, H, W]`` tensor; ``encode_images`` takes a
    batch of those.
    """

    mode = "torch"

    def __init__(self, spec: str, device: str | None = None):
        import open_clip  # lazy: open_clip imports torch, which the ONNX modes never load
        import torch  # lazy: torch only in the torch mode or for a first ONNX export

        torch.set_num_threads(os.cpu_count() or 1)
        self.spec = spec
        self.parsed = parse_model_spec(spec)
        _check_available(self.parsed)
        self.device = pick_device(device)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                self.parsed.name, pretrained=self.parsed.pretrained, device=self.device)
            self.tokenizer = open_clip.get_tokenizer(self.parsed.name)
        except ModelUnavailable:
            raise
        except Exception as exc:  # open_clip raises many kinds for missing or offline weights
            raise ModelUnavailable(
                f"cannot load model '{spec}': {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. "
                + REMEDIES.format(spec=spec)) from exc
        model.eval()
        self.model = model
        self.transform: Callable = preprocess  # open_clip's own torchvision transform, the reference
        # The decode threads get its exact numpy port where there is one: torch ops there would
        # each start intra-op threads and fight the model for the cores.
        cfg = dict(getattr(model.visual, "preprocess_cfg", {}) or {})
        port = exact_port(preprocess, cfg, self.image_size)
        self.preprocess: Callable = preprocess if isinstance(port, str) else port
        self.logit_scale = float(model.logit_scale.exp().item()) if hasattr(model, "logit_scale") else 100.0
        with torch.no_grad():
            self.dim = int(self.encode_texts(["a photo"]).shape[1])

    @property
    def image_size(self) -> int:
        size = getattr(self.model.visual, "image_size", 224)
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def preprocess_info(self) -> dict:
        return {"image_size": self.image_size, "transform": repr(self.transform)}

    def prepare_images(self) -> None:
        """Nothing to start: the torch model is loaded whole (the ONNX encoder loads its image tower here)."""

    def encode_images(self, batch) -> np.ndarray:
        """``batch``: a ``[N, 3, H, W]`` tensor or array, or a list of ``[3, H, W]`` tensors or
        float32 arrays → ``[N, D]``."""
        import torch  # lazy: torch only in the torch mode or for a first ONNX export

        if isinstance(batch, (list, tuple)):
            batch = torch.from_numpy(np.stack(batch)) if isinstance(batch[0], np.ndarray) else torch.stack(list(batch))
        elif isinstance(batch, np.ndarray):
            batch = torch.from_numpy(batch)
        with torch.inference_mode():
            features = self.model.encode_image(batch.to(self.device))
        return unit(features.float().cpu().numpy())

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Texts → ``[N, D]`` unit vectors."""
        import torch  # lazy: torch only in the torch mode or for a first ONNX export

        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                tokens = self.tokenizer(list(texts[start:start + batch_size])).to(self.device)
                out.append(self.model.encode_text(tokens).float().cpu().numpy())
        if not out:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        return unit(np.concatenate(out))


def vector_kind(mode: str) -> str:
    """What a mode's vectors are, for keeping them apart: ``fp32`` or ``int8``."""
    return "int8" if mode == "int8" else "fp32"


def describe_backend(spec: str, mode: str, device: str | None = None, cache_dir: Path | None = None,
                     runtime: str | None = None) -> dict:
    """Which back end runs ``spec`` in ``mode`` on this machine, from what is recorded, loading nothing:
    ``{mode, runtime, precision, device}``, plus on the CPU the ``cpu`` kind and ``threads``; for fp32
    the runtime chosen (or forced by ``runtime``) for that kind with the rates measured
    (``runtime_choice``, where more than one runtime was a candidate); for int8 the ``recipe``
    chosen for that kind (None: refused here; ``"not chosen yet"``) with its check."""
    mode = check_mode(mode)
    runtime = runtimes.check_runtime(runtime)
    if mode == "torch" or (mode == "fp32" and _wants_cuda(device)):
        return {"mode": mode, "runtime": "torch", "precision": "fp32",
                "device": device or ("cuda" if _wants_cuda(None) else "cpu")}
    from . import cpu, int8, onnx_export

    here = cpu.detect()
    info = {"mode": mode, "runtime": "onnxruntime", "precision": mode, "device": "cpu", "cpu": here.key,
            "threads": os.cpu_count() or 1}
    parsed = parse_model_spec(spec)
    try:
        folder = onnx_export.export_dir(Path(cache_dir or default_cache_dir()), parsed.name, parsed.pretrained)
    except OSError:
        folder = None
    if mode == "int8":
        choice = int8.read_choices(folder).get(here.key) if folder else None
        info.update(int8.summary(choice))
    else:
        choice = runtimes.recorded(folder, here) if folder else None
        info["runtime"] = runtime if runtime != runtimes.AUTO else (choice or {}).get("runtime", "onnxruntime")
        info.update(runtimes.summary(choice, info["runtime"]))
    return info


def check_mode(mode: str | None, allowed: tuple[str, ...] = MODES) -> str:
    """``mode`` or the default, refused (with the choices) when unknown; ``allowed``
    :data:`MODE_SETTINGS` also accepts ``auto``."""
    mode = (mode or DEFAULT_MODE).strip().lower()
    if mode not in allowed:
        raise ModelUnavailable(f"unknown encoder mode {mode!r}; use one of: {', '.join(MODE_SETTINGS)}")
    return mode


def resolve_auto(spec: str, device: str | None = None, cache_dir: Path | None = None,
                 progress: Callable[[str], None] | None = None) -> str:
    """The mode ``auto`` gives ``spec`` here: ``int8`` where this CPU kind's int8 recipe keeps cosine
    >= 0.99 to fp32 and top-1 labels agreeing with fp32's at :data:`labeler.encoding.int8.AGREEMENT`
    (measured once, by the int8 check of the first int8 or auto run), else ``fp32``; on a CUDA
    device ``fp32`` (the torch model). A model that cannot load fails here as in any mode."""
    if _wants_cuda(device):
        return "fp32"
    from . import cpu, int8, onnx_export

    try:
        load_encoder(spec, device, "int8", cache_dir, progress)
    except ModelUnavailable:
        load_encoder(spec, device, "fp32", cache_dir, progress)  # the model itself is the problem: say so
        return "fp32"  # no int8 recipe is faithful on this CPU kind
    parsed = parse_model_spec(spec)
    folder = onnx_export.export_dir(Path(cache_dir or default_cache_dir()), parsed.name, parsed.pretrained)
    return "int8" if int8.agrees(int8.read_choices(folder).get(cpu.detect().key)) else "fp32"


def default_cache_dir() -> Path:
    """Where exports go when the config names no place (``Config.encoder_cache``, which
    ``LABELER_ENCODER_CACHE`` sets): ``~/.cache/labeler/encoders``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "labeler" / "encoders"


def _wants_cuda(device: str | None) -> bool:
    """Whether an fp32 encoder should be the torch model on a GPU; decided without importing
    torch when the machine has no NVIDIA device at all."""
    if device is not None:
        return device.startswith("cuda")
    if not Path("/dev/nvidia0").exists() and not Path("/dev/nvidiactl").exists():
        return False
    import torch  # lazy: torch only in the torch mode or for a first ONNX export

    return torch.cuda.is_available()


def _onnx_encoder(spec: str, mode: str, cache_dir: Path, progress: Callable[[str], None] | None,
                  runtime: str = runtimes.AUTO):
    from . import onnx_export  # lazy: the export imports torch
    from .onnx_encoder import OnnxEncoder  # lazy: ONNX Runtime only for the ONNX modes

    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ModelUnavailable(f"the {mode} mode needs onnxruntime: pip install onnxruntime "
                               "(or use --mode torch)") from exc
    parsed = parse_model_spec(spec)
    if parsed.name.startswith("local-dir:") or (parsed.pretrained and looks_like_path(parsed.pretrained)):
        _check_local(parsed)
    folder = onnx_export.export_dir(cache_dir, parsed.name, parsed.pretrained)
    meta = onnx_export.read_meta(folder)
    if meta is None:
        torch_encoder = Encoder(spec, "cpu")  # first: a model that cannot load fails with one line
        if progress:
            progress(f"preparing model '{spec}' for ONNX Runtime, once (into {folder})")
        meta = onnx_export.export_towers(torch_encoder, folder, progress)
        del torch_encoder  # not kept: once exported, the torch model's memory goes back
    recipe = choice = None
    if mode == "int8":
        recipe, choice = _int8_recipe(spec, folder, meta, progress)
    else:
        runtime, choice = _fp32_runtime(spec, folder, meta, runtime, progress)
    try:
        return OnnxEncoder(spec, folder, meta, mode, recipe, choice, "onnxruntime" if mode == "int8" else runtime)
    except Exception as exc:  # a damaged export: say where it is, never run another mode instead
        raise ModelUnavailable(f"cannot run the ONNX export of '{spec}' in {folder}: {type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''}. Delete that folder to export "
                               "it again, or use --mode torch.") from exc


def _int8_recipe(spec: str, folder: Path, meta: dict, progress: Callable[[str], None] | None) -> tuple[str, dict]:
    """The int8 recipe this CPU kind keeps faithful for the export in ``folder``, chosen (and
    checked against fp32) on the first int8 run there; :class:`ModelUnavailable` naming fp32 when none is."""
    from . import cpu, int8
    from .onnx_encoder import OnnxEncoder

    here = cpu.detect()
    choice = int8.read_choices(folder).get(here.key)
    if choice is None or (choice.get("recipe") and not all(
            int8.tower_file(folder, t, choice["recipe"]).exists() for t in ("image", "text"))):
        choice = int8.choose(folder, here, OnnxEncoder(spec, folder, meta, "fp32"),
                             lambda recipe: OnnxEncoder(spec, folder, meta, "int8", recipe), progress=progress)
    return int8.require(choice, spec), choice


def _fp32_runtime(spec: str, folder: Path, meta: dict, forced: str,
                  progress: Callable[[str], None] | None) -> tuple[str, dict]:
    """The runtime of the fp32 towers here: the one measured fastest among the faithful candidates
    on this CPU kind (measured on the first fp32 run there), or ``forced`` where that passed the check."""
    from . import cpu, int8
    from .onnx_encoder import OnnxEncoder

    here = cpu.detect()
    choice = runtimes.recorded(folder, here)
    if choice is None:
        if forced == "onnxruntime" or runtimes.candidates(here) == ["onnxruntime"]:
            choice = {"runtime": "onnxruntime", "tried": []}  # nothing to measure
        else:
            reference = OnnxEncoder(spec, folder, meta, "fp32")
            choice = runtimes.choose(folder, here, lambda name: OnnxEncoder(spec, folder, meta, "fp32", runtime=name),
                                     int8.probe_inputs(reference.preprocess), progress=progress)
    return runtimes.require(choice, forced, spec), choice


def _check_local(parsed: ModelSpec) -> None:
    """The torch-free part of :func:`_check_available`: local files that must exist."""
    if parsed.name.startswith("local-dir:"):
        folder = Path(parsed.name[len("local-dir:"):]).expanduser()
        if not (folder / "open_clip_config.json").is_file():
            _check_available(parsed)  # raises with the full remedies
    elif not Path(parsed.pretrained).expanduser().is_file():
        raise ModelUnavailable(
            f"weights file {parsed.pretrained} does not exist. " + REMEDIES.format(spec=parsed.spec))


_cache: dict[tuple, object] = {}
_loading = threading.Lock()


def load_encoder(spec: str, device: str | None = None, mode: str | None = None, cache_dir: Path | None = None,
                 progress: Callable[[str], None] | None = None, runtime: str | None = None):
    """Load (once per process, whatever the threads) the encoder for ``spec`` in ``mode``.

    ``cache_dir`` holds the ONNX exports (default :func:`default_cache_dir`); a first export
    reports its steps through ``progress(line)``. ``runtime`` forces the fp32 towers' runtime
    (:mod:`labeler.encoding.runtimes`; default ``auto``: the one chosen on this CPU kind). Returns an :class:`Encoder` (torch) or a
    :class:`labeler.encoding.onnx_encoder.OnnxEncoder`; both have the same interface.
    """
    mode = check_mode(mode)
    runtime = runtimes.check_runtime(runtime)
    if mode == "fp32" and _wants_cuda(device):
        mode = "torch"  # the same vectors; on a GPU the torch model is the fast way
    if mode == "int8" and device is not None and device != "cpu":
        raise ModelUnavailable(f"the int8 mode runs on the CPU only, not on {device}; use --mode fp32 or torch")
    cache_dir = None if mode == "torch" else Path(cache_dir or default_cache_dir())
    key = (spec, device if mode == "torch" else "cpu", mode, cache_dir, runtime if mode == "fp32" else None)
    with _loading:
        if key not in _cache:
            if mode == "torch":
                _cache[key] = Encoder(spec, device)
            else:
                _cache[key] = _onnx_encoder(spec, mode, cache_dir, progress, runtime)
        return _cache[key]
