"""The fp32 towers' runtime per CPU kind: candidates checked against ONNX Runtime at cosine 0.9999,
timed, the choice recorded beside the export by CPU kind, a forced runtime refused where it failed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labeler.encoding import cpu, int8, onnx_export, runtimes
from labeler.encoding.encoder import describe_backend, load_encoder
from labeler.encoding.model_spec import TINY_DIR, TINY_NAME
from labeler.encoding.onnx_encoder import OnnxEncoder
from labeler.errors import ModelUnavailable
from tests.cli import manage


def _fp32_copy(onnx_cache: Path, cache: Path) -> Path:
    """labeler-tiny's fp32 export alone (no int8 files, no choices), in a fresh cache folder."""
    source = onnx_export.export_dir(onnx_cache, f"local-dir:{TINY_DIR}", None)
    target = cache / source.name
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(
        "*.int8*", int8.CHOICE_FILE, runtimes.CHOICE_FILE, "openvino-cache"))
    return target


def _make(folder: Path):
    meta = onnx_export.read_meta(folder)
    return lambda runtime: OnnxEncoder(TINY_NAME, folder, meta, "fp32", runtime=runtime)


def _world_pixels(world: Path, encoder) -> np.ndarray:
    images = [Image.open(p).convert("RGB") for p in sorted(world.glob("*.png"))[:16]]
    return np.stack([encoder.preprocess(i) for i in images])


def test_runtime_settings_and_candidates():
    assert runtimes.check_runtime(None) == "auto" and runtimes.check_runtime(" OpenVINO ") == "openvino"
    with pytest.raises(ModelUnavailable, match="onnxruntime"):
        runtimes.check_runtime("tensorrt")
    here = cpu.detect()
    assert runtimes.candidates(here)[0] == "onnxruntime"
    assert ("openvino" in runtimes.candidates(here)) == runtimes.installed("openvino")
    # OpenVINO is measured on x86 only
    assert runtimes.candidates(cpu.from_flags({"asimd"}, "an ARM CPU", "aarch64")) == ["onnxruntime"]


def test_choice_is_checked_timed_and_recorded_per_cpu_kind(tmp_path, onnx_cache, world):
    pytest.importorskip("openvino")
    folder = _fp32_copy(onnx_cache, tmp_path / "cache")
    make = _make(folder)
    here = cpu.detect()
    choice = runtimes.choose(folder, here, make, int8.probe_inputs(make("onnxruntime").preprocess))
    tried = {t["runtime"]: t for t in choice["tried"]}
    assert set(tried) == {"onnxruntime", "openvino"} and choice["candidates"] == ["onnxruntime", "openvino"]
    assert tried["openvino"]["passed"] and tried["openvino"]["min_cosine"] >= runtimes.FLOOR
    assert tried["openvino"]["text_min_cosine"] >= runtimes.FLOOR
    assert all(t["img_per_s"] > 0 for t in tried.values())  # both were timed; which won is the machine's business
    assert all(isinstance(t["memory_mb"], float) for t in tried.values())  # and weighed (allocator reuse can make it 0)
    assert choice["runtime"] in runtimes.RUNTIMES
    # the winner must beat ONNX Runtime by the margin (more where it holds more memory), else ONNX Runtime stays
    heavier = tried["openvino"]["memory_mb"] > runtimes.MEMORY_SLACK * tried["onnxruntime"]["memory_mb"]
    assert tried["openvino"]["needs"] == (runtimes.MEMORY_MARGIN if heavier else runtimes.MARGIN)
    if choice["runtime"] == "openvino":
        assert tried["openvino"]["img_per_s"] >= tried["openvino"]["needs"] * tried["onnxruntime"]["img_per_s"]
    assert runtimes.recorded(folder, here) == json.loads(json.dumps(choice))
    assert set(runtimes.read_record(folder, runtimes.CHOICE_FILE)) == {here.key}

    # the encoder the choice gives agrees with ONNX Runtime's on images the check never saw
    chosen = load_encoder(TINY_NAME, "cpu", "fp32", tmp_path / "cache")
    assert chosen.runtime == choice["runtime"]
    pixels = _world_pixels(world, chosen)
    ref = make("onnxruntime").encode_images(pixels)
    assert float((ref * chosen.encode_images(pixels)).sum(axis=1).min()) >= runtimes.FLOOR
    backend = describe_backend(TINY_NAME, "fp32", None, tmp_path / "cache")
    assert backend["runtime"] == choice["runtime"] and backend["runtime_choice"]["forced"] is False
    assert set(backend["runtime_choice"]["img_per_s"]) == {"onnxruntime", "openvino"}
    assert set(backend["runtime_choice"]["memory_mb"]) == {"onnxruntime", "openvino"}


def test_a_heavier_runtime_must_be_faster_by_the_memory_margin(tmp_path, onnx_cache):
    # The same measurements, two bars: counted as heavier (slack below zero) and held to a speed-up
    # no runtime shows, OpenVINO cannot replace ONNX Runtime; not counted as heavier, only the margin
    # applies, and a margin of 0 lets the faster of the two win.
    pytest.importorskip("openvino")
    folder = _fp32_copy(onnx_cache, tmp_path / "cache")
    make = _make(folder)
    here = cpu.detect()
    inputs = int8.probe_inputs(make("onnxruntime").preprocess)
    held = runtimes.choose(folder, here, make, inputs, rounds=1, memory_slack=-1.0, memory_margin=100.0)
    assert held["runtime"] == "onnxruntime" and held["memory_margin"] == 100.0
    assert next(t for t in held["tried"] if t["runtime"] == "openvino")["needs"] == 100.0
    free = runtimes.choose(folder, here, make, inputs, rounds=1, margin=0.0, memory_slack=1e9)
    rates = {t["runtime"]: t["img_per_s"] for t in free["tried"]}
    assert free["runtime"] == max(rates, key=rates.get)
    assert runtimes.recorded(folder, here)["runtime"] == free["runtime"]  # the last choice is the one kept


def test_a_choice_made_with_other_candidates_is_measured_again(tmp_path, onnx_cache):
    folder = _fp32_copy(onnx_cache, tmp_path / "cache")
    here = cpu.detect()
    stale = {"runtime": "openvino", "candidates": ["onnxruntime", "openvino", "a-runtime-since-removed"],
             "tried": [{"runtime": "openvino", "passed": True}]}
    runtimes.write_record(folder, runtimes.CHOICE_FILE, here, stale)
    assert runtimes.recorded(folder, here) is None
    encoder = load_encoder(TINY_NAME, "cpu", "fp32", tmp_path / "cache")
    recorded = runtimes.recorded(folder, here)
    if len(runtimes.candidates(here)) > 1:  # measured again, with the candidates installed now
        assert recorded["candidates"] == runtimes.candidates(here) and encoder.runtime == recorded["runtime"]
    else:  # one candidate: nothing to measure, ONNX Runtime runs
        assert encoder.runtime == "onnxruntime"


def test_a_failed_check_refuses_the_forced_runtime_and_auto_keeps_onnxruntime(tmp_path, onnx_cache):
    pytest.importorskip("openvino")
    cache = tmp_path / "cache"
    folder = _fp32_copy(onnx_cache, cache)
    make = _make(folder)
    here = cpu.detect()
    failed = runtimes.choose(folder, here, make, int8.probe_inputs(make("onnxruntime").preprocess),
                             floor=1.01)  # no other runtime's vector is that close
    assert failed["runtime"] == "onnxruntime"
    openvino = next(t for t in failed["tried"] if t["runtime"] == "openvino")
    assert not openvino["passed"] and "img_per_s" not in openvino  # not faithful: not even timed
    with pytest.raises(ModelUnavailable, match="LABELER_ENCODER_RUNTIME=auto or onnxruntime") as refused:
        load_encoder(TINY_NAME, "cpu", "fp32", cache, runtime="openvino")
    assert here.key in str(refused.value) and "cosine" in str(refused.value)
    assert load_encoder(TINY_NAME, "cpu", "fp32", cache).runtime == "onnxruntime"


def test_a_forced_runtime_runs_and_is_reported(tmp_path, onnx_cache, world):
    pytest.importorskip("openvino")
    cache = tmp_path / "cache"
    _fp32_copy(onnx_cache, cache)
    forced = load_encoder(TINY_NAME, "cpu", "fp32", cache, runtime="openvino")
    assert forced.runtime == "openvino"
    reference = load_encoder(TINY_NAME, "cpu", "fp32", cache, runtime="onnxruntime")
    assert reference.runtime == "onnxruntime"
    # ONNX Runtime, the reference, is never refused, even on an export no choice was measured for
    unmeasured = tmp_path / "unmeasured"
    _fp32_copy(onnx_cache, unmeasured)
    assert load_encoder(TINY_NAME, "cpu", "fp32", unmeasured, runtime="onnxruntime").runtime == "onnxruntime"
    pixels = _world_pixels(world, forced)
    assert float((reference.encode_images(pixels) * forced.encode_images(pixels)).sum(axis=1).min()) >= runtimes.FLOOR
    texts = ["a red hammer", "a photo of a wrench on a bench"]
    assert float((reference.encode_texts(texts) * forced.encode_texts(texts)).sum(axis=1).min()) >= runtimes.FLOOR
    backend = describe_backend(TINY_NAME, "fp32", None, cache, runtime="openvino")
    assert backend["runtime"] == "openvino" and backend["precision"] == "fp32"
    # int8 runs in ONNX Runtime whatever the fp32 runtime
    with pytest.raises(ValueError, match="ONNX Runtime only"):
        OnnxEncoder(TINY_NAME, forced.folder, forced.meta, "int8", "s8-reduced", runtime="openvino")


def test_the_cli_refuses_an_unknown_runtime_in_one_line(tmp_path, onnx_cache, world):
    env = {"LABELER_ENCODER_CACHE": str(onnx_cache), "LABELER_ENCODER_RUNTIME": "tensorrt"}
    cli = manage("--home", tmp_path / "home", "--model", TINY_NAME, "index", world, env=env, expect=2)
    lines = cli.stderr.strip().splitlines()
    assert len(lines) == 1 and "tensorrt" in lines[0] and "Traceback" not in cli.stderr


def test_ray_embed_replicas_get_the_forced_runtime(tmp_path, onnx_cache):
    # The stage in this process, without a cluster: what RayRunner hands each replica's constructor.
    pytest.importorskip("openvino")
    from labeler.config import Config
    from labeler.ingest.ray_engine import EmbedStage, embed_stage_args

    cache = tmp_path / "cache"
    _fp32_copy(onnx_cache, cache)
    forced = Config(home=tmp_path / "home", model=TINY_NAME, encoder_cache=cache, encoder_runtime="openvino")
    assert EmbedStage(*embed_stage_args(forced, TINY_NAME, "fp32", "cpu")).encoder.runtime == "openvino"
    plain = Config.from_env({"LABELER_HOME": str(tmp_path / "home"), "LABELER_ENCODER_CACHE": str(cache),
                             "LABELER_ENCODER_RUNTIME": "onnxruntime"})
    assert EmbedStage(*embed_stage_args(plain, TINY_NAME, "fp32", "cpu")).encoder.runtime == "onnxruntime"
