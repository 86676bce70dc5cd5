"""int8 towers that keep their promise: a quantisation recipe chosen per CPU kind by a fidelity check.

ONNX Runtime runs dynamic int8 MatMuls as u8 activations × s8 weights. Without VNNI (AVX2, or
AVX-512 before Cascade Lake) its kernels add pairs of those products in 16 bits, which saturate;
ViT-B-32's vectors then fall to cosine 0.96 to fp32. ONNX Runtime's quantisation guide names the
fixes: 7-bit weights (``reduce_range``) and per-channel scales. Which recipe is faithful, and
which is fastest, depends on the CPU, so the choice is measured there, once:

* the recipes are tried in the CPU kind's order (:func:`candidates`), the first that passes is kept;
* the check (:func:`check`) runs both towers on images labeler makes (demo-world objects and
  photo-like JPEGs, :mod:`labeler.encoding.probe_images`) and on the workshop prompts, against the
  fp32 export: every vector at cosine ≥ :data:`FLOOR`, and the labels' agreement with fp32's
  (top-1 per group of ``prompt_sets/workshop.yaml`` on the demo world) reported beside it;
* the outcome is recorded in the export folder (which is keyed by the weights) in ``int8.json``,
  keyed by CPU kind: ``{kind: {"recipe": NAME or None, "tried": [...], ...}}``. A recipe that
  failed leaves no file behind; a kind where none passed has ``recipe`` None, and the int8 mode
  is refused there (:func:`require`), naming fp32.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ModelUnavailable
from .cpu import CpuKind
from .runtimes import read_record, write_record

FLOOR = 0.99  # the README's promise: every int8 vector at cosine >= 0.99 to its fp32 vector
AGREEMENT = 0.995  # the issue's bar for int8 as a default: top-1 labels as fp32's on 99.5% of (image, group)
CHOICE_FILE = "int8.json"
RECIPES: dict[str, dict] = {  # quantize_dynamic's arguments beyond the weight type and the op types
    "s8": {},
    "s8-channel": {"per_channel": True},
    "s8-reduced": {"reduce_range": True},
    "s8-channel-reduced": {"per_channel": True, "reduce_range": True},
}
PROBE_WORLD, PROBE_PHOTOS = 48, 16  # images in the check: enough for every concept and context, a few seconds
Progress = Callable[[str], None]


def candidates(cpu: CpuKind) -> list[str]:
    """The recipes to try on ``cpu``, in order: the fastest likely to be faithful first.

    With VNNI the full-range weights do not saturate. Without it, 7-bit weights are the fix:
    ViT-B-32 (random weights) on an AVX2 EPYC reached min cosine 0.980 with ``s8``, 0.979 with
    ``s8-channel`` and 0.9995 with ``s8-reduced``, so per-channel scales alone are not tried there.
    """
    if cpu.vnni:
        return ["s8", "s8-reduced", "s8-channel-reduced"]
    return ["s8-reduced", "s8-channel-reduced"]


def tower_file(folder: Path, tower: str, recipe: str) -> Path:
    return folder / f"{tower}.int8-{recipe}.onnx"


def read_choices(folder: Path) -> dict:
    """Every CPU kind's recorded choice for the export in ``folder`` ({} when none)."""
    return read_record(folder, CHOICE_FILE)


def quantize(folder: Path, recipe: str) -> None:
    """Write both towers of ``recipe`` (dynamic int8 weights of every MatMul and Gemm), atomically.

    Two processes may quantise one export at once (two first runs of a model). ``quantize_dynamic``
    writes its shape-inferred copy beside its input as ``<input>-inferred.onnx`` and deletes it, so
    each process reads the tower through its own hard link (a copy where links are refused), and
    the two never share, or delete, each other's files."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    for tower in ("image", "text"):
        target = tower_file(folder, tower, recipe)
        if target.exists():
            continue
        mine = f"{os.getpid()}.{threading.get_ident()}"
        tmp, source = folder / f"{tower}.int8-{recipe}.{mine}.tmp.onnx", folder / f"{tower}.{mine}.src.onnx"
        quiet = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)  # its pre-processing advice is for calibrated quantisation
        try:
            try:
                os.link(folder / f"{tower}.onnx", source)
            except OSError:
                shutil.copyfile(folder / f"{tower}.onnx", source)
            quantize_dynamic(source, tmp, weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul", "Gemm"], **RECIPES[recipe])
            os.replace(tmp, target)
        finally:
            logging.getLogger().setLevel(quiet)
            tmp.unlink(missing_ok=True)
            source.unlink(missing_ok=True)


def _drop(folder: Path, recipe: str) -> None:
    for tower in ("image", "text"):
        tower_file(folder, tower, recipe).unlink(missing_ok=True)


def label_agreement(ref_images: np.ndarray, got_images: np.ndarray, ref_texts: dict[str, np.ndarray],
                    got_texts: dict[str, np.ndarray], prompt_set) -> float:
    """Share of (image, group) pairs whose top-1 option is the same under both encoders.

    Each side labels with its own image and text vectors, by the default strategy (the option's
    ensemble vector), the way ``label`` does. ``*_images`` ``[N, D]``; ``*_texts`` text → ``[D]``.
    """
    from ..core import scoring

    same = total = 0
    for group in prompt_set.groups.values():
        texts = [p.text for o in group.options for p in o.prompts]
        owner = np.array([i for i, o in enumerate(group.options) for _ in o.prompts], np.int64)
        picks = []
        for images, vectors in ((ref_images, ref_texts), (got_images, got_texts)):
            options = scoring.mean_embeddings(np.stack([vectors[t] for t in texts]), owner, len(group.options))
            picks.append(scoring.prompt_cosines(images, options).argmax(axis=1))
        same += int((picks[0] == picks[1]).sum())
        total += len(picks[0])
    return same / total if total else 1.0


def probe_inputs(preprocess) -> tuple[np.ndarray, np.ndarray, list[str], object]:
    """The check's inputs: world pixels ``[W, 3, H, W]``, photo pixels, the workshop prompts, the prompt set."""
    from ..core.prompts import PROMPT_SET_DIR, load_prompt_set
    from .probe_images import photos, world_images

    world, _rows = world_images(PROBE_WORLD)
    prompt_set = load_prompt_set(PROMPT_SET_DIR / "workshop.yaml")
    texts = list(dict.fromkeys(p.text for g in prompt_set.groups.values() for o in g.options for p in o.prompts))
    return (np.stack([preprocess(i) for i in world]), np.stack([preprocess(i) for i in photos(PROBE_PHOTOS)]),
            texts, prompt_set)


def check(fp32, int8, inputs) -> dict:
    """How ``int8`` (an encoder) keeps to ``fp32`` on the probe ``inputs`` (:func:`probe_inputs`).

    Returns ``min_cosine`` (images: world and photos), ``text_min_cosine`` and ``label_agreement``.
    """
    world, photo, texts, prompt_set = inputs

    def images(encoder):
        return [np.concatenate([encoder.encode_images(part[i:i + 32]) for i in range(0, len(part), 32)])
                for part in (world, photo)]

    (ref_world, ref_photo), (got_world, got_photo) = images(fp32), images(int8)
    ref_text, got_text = fp32.encode_texts(texts), int8.encode_texts(texts)
    return {
        "min_cosine": round(float(min((ref_world * got_world).sum(1).min(), (ref_photo * got_photo).sum(1).min())), 5),
        "world_min_cosine": round(float((ref_world * got_world).sum(1).min()), 5),
        "photo_min_cosine": round(float((ref_photo * got_photo).sum(1).min()), 5),
        "text_min_cosine": round(float((ref_text * got_text).sum(1).min()), 5),
        "label_agreement": round(label_agreement(ref_world, got_world, dict(zip(texts, ref_text)),
                                                 dict(zip(texts, got_text)), prompt_set), 5),
    }


def choose(folder: Path, cpu: CpuKind, fp32, make_int8: Callable[[str], object], floor: float = FLOOR,
           progress: Progress | None = None) -> dict:
    """Try ``cpu``'s candidate recipes on the export in ``folder``; record and return the choice.

    ``fp32`` is the export's fp32 encoder; ``make_int8(recipe)`` builds the int8 encoder of a
    quantised recipe. The first recipe whose vectors all reach ``floor`` is chosen; the others'
    files are removed. ``recipe`` is None when none did.
    """
    say = progress or (lambda _line: None)
    inputs = probe_inputs(fp32.preprocess)
    tried, chosen = [], None
    for recipe in candidates(cpu):
        say(f"quantising the towers to int8 ({recipe}) and checking them against fp32 on this CPU ({cpu.key})")
        quantize(folder, recipe)
        result = {"recipe": recipe, **check(fp32, make_int8(recipe), inputs)}
        result["passed"] = result["min_cosine"] >= floor and result["text_min_cosine"] >= floor
        tried.append(result)
        if result["passed"]:
            chosen = recipe
            break
        _drop(folder, recipe)
    choice = {"recipe": chosen, "floor": floor, "cpu": cpu.describe(), "tried": tried,
              "probe": {"world_images": PROBE_WORLD, "photos": PROBE_PHOTOS, "prompt_set": "workshop"}}
    write_record(folder, CHOICE_FILE, cpu, choice)
    return choice


def _passed(choice: dict) -> dict:
    """The check of the chosen recipe ({} where none passed)."""
    return {t.get("recipe"): t for t in choice.get("tried", [])}.get(choice.get("recipe"), {}) if choice.get("recipe") else {}


def agrees(choice: dict | None) -> bool:
    """Whether ``choice`` (a CPU kind's record) makes int8 the mode ``auto`` picks: a faithful recipe
    whose top-1 labels agreed with fp32's on at least :data:`AGREEMENT` of the check's (image, group) pairs."""
    return bool(choice) and _passed(choice).get("label_agreement", 0.0) >= AGREEMENT


def summary(choice: dict | None) -> dict:
    """A recorded choice in brief: ``recipe`` (None where none passed, ``"not chosen yet"``), its check,
    and ``auto_picks_int8`` (:func:`agrees`): why ``--mode auto`` gives int8 here, or fp32."""
    if choice is None:
        return {"recipe": "not chosen yet"}
    passed = _passed(choice)
    return {"recipe": choice.get("recipe"),
            **{k: passed[k] for k in ("min_cosine", "text_min_cosine", "label_agreement") if k in passed},
            "auto_picks_int8": agrees(choice), "auto_agreement_floor": AGREEMENT}


def require(choice: dict, spec: str) -> str:
    """The chosen recipe, or :class:`ModelUnavailable` naming fp32 when none keeps the promise."""
    if choice.get("recipe") and choice["recipe"] in RECIPES:
        return choice["recipe"]
    cpu = choice.get("cpu", {})
    best = max(choice.get("tried") or [{}], key=lambda t: t.get("min_cosine", 0.0))
    how = (f"; the best recipe ({best['recipe']}) reached cosine {best['min_cosine']:.4f} to fp32"
           if best.get("recipe") else "")
    raise ModelUnavailable(
        f"the int8 mode of model '{spec}' does not keep cosine >= {choice.get('floor', FLOOR)} to fp32 on this CPU "
        f"({cpu.get('model', '?')}, {cpu.get('kind', '?')}){how}. Use --mode fp32 (LABELER_ENCODER_MODE=fp32).")
