"""int8 per CPU kind: the recipe is chosen by a cosine check against fp32, recorded by CPU kind
beside the export, and the int8 mode is refused (naming fp32) where no recipe passes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labeler.encoding import cpu, int8, onnx_export
from labeler.encoding.encoder import describe_backend, load_encoder
from labeler.encoding.model_spec import TINY_DIR, TINY_NAME
from labeler.encoding.onnx_encoder import OnnxEncoder
from labeler.errors import ModelUnavailable
from tests.cli import manage

NO_VNNI = cpu.from_flags({"sse4_1", "avx", "fma", "avx2"}, "forced AVX2 without VNNI")
VNNI = cpu.from_flags({"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"}, "forced AVX-512 with VNNI")


def _fp32_copy(onnx_cache: Path, cache: Path) -> Path:
    """labeler-tiny's fp32 export alone (no int8 files, no choices), in a fresh cache folder."""
    source = onnx_export.export_dir(onnx_cache, f"local-dir:{TINY_DIR}", None)
    target = cache / source.name
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.int8*", int8.CHOICE_FILE))
    assert onnx_export.export_dir(cache, f"local-dir:{TINY_DIR}", None) == target
    return target


def _encoders(folder: Path):
    meta = onnx_export.read_meta(folder)
    return (OnnxEncoder(TINY_NAME, folder, meta, "fp32"),
            lambda recipe: OnnxEncoder(TINY_NAME, folder, meta, "int8", recipe))


def test_cpu_kinds():
    assert (NO_VNNI.key, NO_VNNI.vnni) == ("avx2", False)
    assert (VNNI.key, VNNI.vnni) == ("avx512+vnni", True)
    assert cpu.from_flags({"avx2", "avx_vnni", "amx_int8", "avx512f", "avx512bw"}).key == "avx512+vnni+amx"
    assert cpu.from_flags({"sse4_1", "flags-not-about-vectors"}).flags == {"sse4_1"}
    # without VNNI the full-range weights saturate: 7-bit weights come first there
    assert int8.candidates(NO_VNNI)[0] == "s8-reduced" and "s8" not in int8.candidates(NO_VNNI)
    assert int8.candidates(VNNI)[0] == "s8"
    here = cpu.detect()
    flags = set(Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split())
    assert here.flags == {f for f in cpu.VECTOR_FLAGS if f in flags}
    assert here.vnni == bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def test_choice_is_checked_and_recorded_per_cpu_kind(tmp_path, onnx_cache, world):
    folder = _fp32_copy(onnx_cache, tmp_path / "cache")
    fp32, make_int8 = _encoders(folder)
    no_vnni = int8.choose(folder, NO_VNNI, fp32, make_int8)
    assert no_vnni["recipe"] == "s8-reduced" and no_vnni["cpu"]["kind"] == "avx2"
    first = no_vnni["tried"][0]
    assert first["passed"] and first["min_cosine"] >= 0.99 and first["text_min_cosine"] >= 0.99
    assert first["label_agreement"] >= 0.9
    assert int8.tower_file(folder, "image", "s8-reduced").exists()
    assert int8.tower_file(folder, "text", "s8-reduced").exists()

    vnni = int8.choose(folder, VNNI, fp32, make_int8)
    assert vnni["tried"][0]["recipe"] == "s8"  # what a VNNI CPU tries first
    recorded = int8.read_choices(folder)
    assert set(recorded) == {"avx2", "avx512+vnni"} and recorded["avx2"] == json.loads(json.dumps(no_vnni))
    # every recipe file left behind is a chosen one: a recipe that failed its check is deleted
    kept = {p.name.split(".")[1][len("int8-"):] for p in folder.glob("*.int8-*.onnx")}
    assert kept == {c["recipe"] for c in recorded.values()}

    # the chosen recipe's vectors keep to fp32 on images the check never saw
    images = [Image.open(p).convert("RGB") for p in sorted(world.glob("*.png"))[:16]]
    pixels = np.stack([fp32.preprocess(i) for i in images])
    ref, got = fp32.encode_images(pixels), make_int8(no_vnni["recipe"]).encode_images(pixels)
    assert float((ref * got).sum(axis=1).min()) >= 0.99


def test_a_failed_check_refuses_int8_and_names_fp32(tmp_path, onnx_cache, world):
    cache = tmp_path / "cache"
    folder = _fp32_copy(onnx_cache, cache)
    fp32, make_int8 = _encoders(folder)
    here = cpu.detect()
    failed = int8.choose(folder, here, fp32, make_int8, floor=1.01)  # no int8 vector is that close
    assert failed["recipe"] is None
    assert [t["recipe"] for t in failed["tried"]] == int8.candidates(here)
    assert not any(t["passed"] for t in failed["tried"])
    assert not list(folder.glob("*.int8*.onnx"))  # a model that failed is not kept, so never used
    with pytest.raises(ModelUnavailable, match="--mode fp32") as refused:
        load_encoder(TINY_NAME, "cpu", "int8", cache)
    assert here.key in str(refused.value) and "cosine" in str(refused.value)
    refused_here = describe_backend(TINY_NAME, "int8", None, cache)
    assert refused_here["recipe"] is None and refused_here["cpu"] == here.key  # recorded as refused on this kind


@pytest.mark.slow
def test_the_cli_refuses_int8_in_one_line_and_reports_the_backend(tmp_path, onnx_cache, world):
    cache = tmp_path / "cache"
    folder = _fp32_copy(onnx_cache, cache)
    fp32, make_int8 = _encoders(folder)
    here = cpu.detect()
    assert int8.choose(folder, here, fp32, make_int8, floor=1.01)["recipe"] is None
    home = tmp_path / "home"
    env = {"LABELER_ENCODER_CACHE": str(cache)}
    cli = manage("--home", home, "--model", TINY_NAME, "index", world, "--mode", "int8", env=env, expect=2)
    lines = cli.stderr.strip().splitlines()
    assert len(lines) == 1 and "--mode fp32" in lines[0] and "Traceback" not in cli.stderr
    stats = json.loads(manage("--home", home, "stats", "--json", env=env, expect=0).stdout)
    assert stats["embedded"] == 0  # refused before anything was embedded

    # fp32 runs, and says which back end did; stats says so too, without loading a model
    report = json.loads(manage("--home", home, "--model", TINY_NAME, "index", world, "--json",
                               env=env, expect=0).stdout)
    assert report["embedded"] > 0
    backend = {k: v for k, v in report["backend"].items() if k != "runtime_choice"}  # rates: the machine's
    assert backend == {"mode": "fp32", "runtime": backend["runtime"], "precision": "fp32", "device": "cpu",
                       "cpu": here.key, "threads": report["backend"]["threads"]}
    assert backend["runtime"] in ("onnxruntime", "openvino")
    stats = json.loads(manage("--home", home, "stats", "--json", env=env, expect=0).stdout)
    assert stats["backend"] == report["backend"]


def test_a_damaged_choice_file_is_checked_again(tmp_path, onnx_cache):
    cache = tmp_path / "cache"
    folder = _fp32_copy(onnx_cache, cache)
    (folder / int8.CHOICE_FILE).write_text("{not json")
    encoder = load_encoder(TINY_NAME, "cpu", "int8", cache)
    assert encoder.recipe == int8.candidates(cpu.detect())[0]
    assert int8.read_choices(folder)[cpu.detect().key]["recipe"] == encoder.recipe


def test_auto_gives_int8_only_where_it_is_faithful_and_agrees(tmp_path, onnx_cache, world, monkeypatch):
    from labeler.collection import Collection, in_session
    from labeler.config import Config
    from labeler.encoding.encoder import resolve_auto
    from labeler.ingest import run

    cache = tmp_path / "cache"
    folder = _fp32_copy(onnx_cache, cache)
    here = cpu.detect()
    choice = int8.choose(folder, here, *_encoders(folder))  # the real check, recorded for this CPU kind
    agreement = next(t for t in choice["tried"] if t["recipe"] == choice["recipe"])["label_agreement"]
    assert int8.agrees(choice) == (agreement >= int8.AGREEMENT)
    assert resolve_auto(TINY_NAME, "cpu", cache) == ("int8" if agreement >= int8.AGREEMENT else "fp32")
    backend = describe_backend(TINY_NAME, "int8", None, cache)
    assert backend["auto_picks_int8"] == int8.agrees(choice) and backend["auto_agreement_floor"] == int8.AGREEMENT

    # the bar decides, on the same recorded check: labels that agree less than it keep fp32
    monkeypatch.setattr(int8, "AGREEMENT", agreement + 1e-6)
    assert resolve_auto(TINY_NAME, "cpu", cache) == "fp32"
    monkeypatch.setattr(int8, "AGREEMENT", agreement)
    assert resolve_auto(TINY_NAME, "cpu", cache) == "int8"

    # a new collection records the mode auto gave it; later runs keep it, whatever auto would say now
    collection = Collection(Config(home=tmp_path / "home", model=TINY_NAME, encoder_mode="auto", encoder_cache=cache))
    run.index_paths(collection, [world])
    assert in_session(collection.models.stored_mode) == "int8"
    monkeypatch.setattr(int8, "AGREEMENT", 1.01)
    for mode in ("auto", None):
        again = Collection(Config(home=tmp_path / "home", model=TINY_NAME, encoder_mode=mode, encoder_cache=cache))
        assert in_session(again.models.mode) == "int8"
    fresh = Collection(Config(home=tmp_path / "other", model=TINY_NAME, encoder_mode="auto", encoder_cache=cache))
    assert in_session(fresh.models.mode) == "fp32"


def test_auto_gives_fp32_where_no_int8_recipe_is_faithful(tmp_path, onnx_cache):
    from labeler.encoding.encoder import check_mode, resolve_auto

    cache = tmp_path / "cache"
    folder = _fp32_copy(onnx_cache, cache)
    assert int8.choose(folder, cpu.detect(), *_encoders(folder), floor=1.01)["recipe"] is None
    assert resolve_auto(TINY_NAME, "cpu", cache) == "fp32"
    assert not describe_backend(TINY_NAME, "int8", None, cache)["auto_picks_int8"]
    with pytest.raises(ModelUnavailable, match="auto"):
        check_mode("fast")
    with pytest.raises(ModelUnavailable):
        check_mode("auto")  # a setting, resolved before any encoder sees it


def test_quantising_never_touches_another_process_s_files(tmp_path, onnx_cache):
    # quantize_dynamic writes "<input>-inferred.onnx" beside its input and deletes it: two first runs
    # of a model once deleted each other's ("No such file") or read it half-written. Another process's
    # file, there while this one quantises, must come through untouched, and nothing of ours stay.
    folder = _fp32_copy(onnx_cache, tmp_path / "cache")
    theirs = {name: f"another process's {name}".encode() for name in ("image-inferred.onnx", "text-inferred.onnx")}
    for name, data in theirs.items():
        (folder / name).write_bytes(data)
    before = {p.name for p in folder.iterdir()}
    int8.quantize(folder, "s8-reduced")
    assert {name: (folder / name).read_bytes() for name in theirs} == theirs
    made = {p.name for p in folder.iterdir()} - before
    assert made == {"image.int8-s8-reduced.onnx", "text.int8-s8-reduced.onnx"}
    fp32 = OnnxEncoder(TINY_NAME, folder, onnx_export.read_meta(folder), "fp32")
    quantised = OnnxEncoder(TINY_NAME, folder, onnx_export.read_meta(folder), "int8", "s8-reduced")
    texts = ["a red hammer", "a saw on a bench"]
    assert float((fp32.encode_texts(texts) * quantised.encode_texts(texts)).sum(axis=1).min()) >= int8.FLOOR
