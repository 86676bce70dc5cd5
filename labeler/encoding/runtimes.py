"""Which runtime runs the fp32 towers on this machine: chosen once per CPU kind by measuring the candidates.

The same ONNX export can be run by ONNX Runtime (always installed) or by OpenVINO (optional:
``pip install openvino``). Which is faster depends on the CPU, so the first fp32 run of a model on
a kind of CPU measures them there, once (:func:`choose`):

* every installed candidate (:func:`candidates`) runs both towers on the probe images and prompts
  (:mod:`labeler.encoding.probe_images`); one whose vectors are not all at cosine >= :data:`FLOOR`
  to ONNX Runtime's is not used: only vectors that agree that closely may share a model row;
* the faithful ones are timed on a few batches, in turn, so a busy machine slows them alike; a
  challenger replaces ONNX Runtime only when it is :data:`MARGIN` times as fast, or
  :data:`MEMORY_MARGIN` times where it holds more than :data:`MEMORY_SLACK` times ONNX Runtime's
  memory (the resident memory its towers added, measured as they ran the probe): fp32's target is
  a process under 1 GB, and OpenVINO's ViT-B-32 image tower held 0.24 GB more than ONNX Runtime's;
* the outcome goes into ``fp32.json`` in the export folder (keyed by the weights), keyed by CPU
  kind, with the candidates that were installed: installing or removing one measures again.

``LABELER_ENCODER_RUNTIME`` (``Config.encoder_runtime``) forces a runtime; it is refused, never
replaced by another, when it is not installed or failed the cosine check here.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ModelUnavailable
from .cpu import CpuKind

RUNTIMES = ("onnxruntime", "openvino")
AUTO = "auto"
CHOICE_FILE = "fp32.json"
FLOOR = 0.9999  # fp32 vectors of two runtimes share a model row only at this cosine or closer
MARGIN = 1.05  # a challenger must be this much faster than ONNX Runtime, so noise never switches runtimes
TRIAL_ROUNDS = 3  # timed batches per candidate, taken in turn
MEMORY_SLACK = 1.10  # a challenger holding more than this times ONNX Runtime's memory is heavier...
MEMORY_MARGIN = 1.15  # ...and must be this much faster to replace it: speed is not bought with the 1 GB target
Progress = Callable[[str], None]


def check_runtime(name: str | None) -> str:
    """``name`` as a runtime setting (``auto`` or one of :data:`RUNTIMES`), refused with the choices."""
    name = (name or AUTO).strip().lower()
    if name not in (AUTO, *RUNTIMES):
        raise ModelUnavailable(f"unknown encoder runtime {name!r}; use one of: {', '.join((AUTO, *RUNTIMES))}")
    return name


def installed(runtime: str) -> bool:
    return find_spec(runtime) is not None


def candidates(cpu: CpuKind) -> list[str]:
    """The runtimes to measure on ``cpu``: ONNX Runtime, then OpenVINO where it is installed (x86 only:
    it is Intel's, and its other builds are not what was measured)."""
    found = ["onnxruntime"]
    if cpu.machine in ("x86_64", "AMD64") and installed("openvino"):
        found.append("openvino")
    return found


def read_record(folder: Path, name: str) -> dict:
    """A JSON record of choices by CPU kind in ``folder`` ({} when missing or damaged)."""
    try:
        data = json.loads((folder / name).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_record(folder: Path, name: str, cpu: CpuKind, choice: dict) -> None:
    """Set ``cpu``'s entry of the record ``name`` in ``folder``, atomically (other kinds' entries kept)."""
    choices = read_record(folder, name)
    choices[cpu.key] = choice
    tmp = folder / f"{name}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(choices, indent=1))
    os.replace(tmp, folder / name)


def recorded(folder: Path, cpu: CpuKind) -> dict | None:
    """``cpu``'s recorded choice, or None when none is, or when the installed candidates changed since."""
    choice = read_record(folder, CHOICE_FILE).get(cpu.key)
    if not isinstance(choice, dict) or choice.get("candidates") != candidates(cpu):
        return None
    return choice


def resident_mb(field: str = "VmRSS") -> float:
    """This process's resident memory now (``VmRSS``), or its peak (``VmHWM``), in MB; 0 where /proc
    cannot say."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _rates(encoders: dict, batch: np.ndarray, rounds: int) -> dict[str, float]:
    """img/s of each encoder on ``batch``, the median of ``rounds`` timed runs taken in turn."""
    times: dict[str, list[float]] = {name: [] for name in encoders}
    for encoder in encoders.values():
        encoder.encode_images(batch)  # warm-up: first-run allocations and kernel choices
    for _ in range(rounds):
        for name, encoder in encoders.items():
            start = time.perf_counter()
            encoder.encode_images(batch)
            times[name].append(time.perf_counter() - start)
    return {name: round(len(batch) / statistics.median(t), 2) for name, t in times.items()}


def choose(folder: Path, cpu: CpuKind, make: Callable[[str], object], inputs, floor: float = FLOOR,
           margin: float = MARGIN, rounds: int = TRIAL_ROUNDS, progress: Progress | None = None,
           memory_slack: float = MEMORY_SLACK, memory_margin: float = MEMORY_MARGIN) -> dict:
    """Measure ``cpu``'s candidate runtimes on the export in ``folder``; record and return the choice.

    ``make(runtime)`` builds the fp32 encoder of a runtime; ``inputs`` are the probe's
    (:func:`labeler.encoding.int8.probe_inputs`). Returns ``{"runtime", "candidates", "tried": [{runtime,
    min_cosine, text_min_cosine, passed, memory_mb, img_per_s, needs}], ...}``; ONNX Runtime is the
    reference. ``needs``: the speed-up over ONNX Runtime a challenger had to show (``margin``, or
    ``memory_margin`` where its ``memory_mb`` is over ``memory_slack`` times ONNX Runtime's).
    """
    say = progress or (lambda _line: None)
    world, photo, texts, _prompt_set = inputs
    pixels = np.concatenate([world, photo])
    names = candidates(cpu)
    before = resident_mb()
    encoders = {"onnxruntime": make("onnxruntime")}
    ref_images, ref_texts = encoders["onnxruntime"].encode_images(pixels), encoders["onnxruntime"].encode_texts(texts)
    tried = [{"runtime": "onnxruntime", "min_cosine": 1.0, "text_min_cosine": 1.0, "passed": True,
              "memory_mb": round(resident_mb() - before, 1)}]
    for name in names[1:]:
        say(f"checking {name} against ONNX Runtime on this CPU ({cpu.key})")
        before = resident_mb()
        try:
            encoder = make(name)
            images, vectors = encoder.encode_images(pixels), encoder.encode_texts(texts)
        except Exception as exc:  # noqa: BLE001  (a runtime that cannot run this model is a failed candidate)
            tried.append({"runtime": name, "passed": False, "error": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        result = {"runtime": name, "min_cosine": round(float((ref_images * images).sum(1).min()), 6),
                  "text_min_cosine": round(float((ref_texts * vectors).sum(1).min()), 6),
                  "memory_mb": round(resident_mb() - before, 1)}
        result["passed"] = result["min_cosine"] >= floor and result["text_min_cosine"] >= floor
        tried.append(result)
        if result["passed"]:
            encoders[name] = encoder
    if len(encoders) > 1:
        say(f"timing {', '.join(encoders)} on this CPU ({cpu.key}), once")
        rates = _rates(encoders, pixels[:32], rounds)
        reference = tried[0]["memory_mb"]
        for result in tried:
            if result["runtime"] in rates:
                result["img_per_s"] = rates[result["runtime"]]
                heavier = result["memory_mb"] > memory_slack * max(reference, 1.0)
                result["needs"] = 1.0 if result is tried[0] else (memory_margin if heavier else margin)
        fast_enough = [t["runtime"] for t in tried
                       if "img_per_s" in t and t["img_per_s"] >= t["needs"] * rates["onnxruntime"]]
        chosen = max(fast_enough, key=rates.get)
    else:
        chosen = "onnxruntime"
    choice = {"runtime": chosen, "candidates": names, "floor": floor, "margin": margin,
              "memory_slack": memory_slack, "memory_margin": memory_margin, "cpu": cpu.describe(),
              "tried": tried, "load_average": round(os.getloadavg()[0], 2), "batch": int(min(32, len(pixels)))}
    if len(names) > 1:  # with one candidate there was nothing to measure, nothing to remember
        write_record(folder, CHOICE_FILE, cpu, choice)
    return choice


def require(choice: dict, forced: str, spec: str) -> str:
    """The runtime to run: ``forced`` unless it is ``auto``, then the chosen one. A forced runtime that
    is not installed, or whose vectors failed the check here, is refused (:class:`ModelUnavailable`)."""
    if forced == AUTO:
        return choice["runtime"]
    if not installed(forced):
        raise ModelUnavailable(f"the encoder runtime {forced} is not installed: pip install {forced}, "
                               "or set LABELER_ENCODER_RUNTIME=auto")
    if forced == "onnxruntime":
        return forced  # the reference the others are checked against: faithful by definition, measured or not
    result = next((t for t in choice.get("tried", []) if t.get("runtime") == forced), None)
    if result is None or not result.get("passed"):
        cpu = choice.get("cpu", {})
        why = (f"its vectors reached cosine {result['min_cosine']:.6f} to ONNX Runtime's, under {choice['floor']}"
               if result and "min_cosine" in result else (result or {}).get("error", "it was not checked here"))
        raise ModelUnavailable(f"the encoder runtime {forced} cannot run model '{spec}' faithfully on this CPU "
                               f"({cpu.get('model', '?')}, {cpu.get('kind', '?')}): {why}. "
                               "Set LABELER_ENCODER_RUNTIME=auto or onnxruntime.")
    return forced


def summary(choice: dict | None, runtime: str) -> dict:
    """What ``backend`` reports of the runtime choice: the rates and memory measured, and why this one runs."""
    if not choice or not choice.get("tried"):
        return {}
    rates = {t["runtime"]: t["img_per_s"] for t in choice["tried"] if "img_per_s" in t}
    memory = {t["runtime"]: t["memory_mb"] for t in choice["tried"] if "img_per_s" in t and "memory_mb" in t}
    return {"runtime_choice": {"chosen": choice.get("runtime"), "img_per_s": rates, "memory_mb": memory,
                               "forced": runtime != choice.get("runtime")}}
