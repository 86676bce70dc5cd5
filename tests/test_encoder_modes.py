"""Encoder modes: ONNX fp32 and int8 against the torch model, the export cache, and the
collection's record of which mode made its vectors."""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pytest
from PIL import Image

from labeler.encoding import onnx_export
from labeler.collection import Collection, in_session
from labeler.config import Config
from labeler.encoding.encoder import check_mode, load_encoder
from labeler.encoding.model_spec import TINY_DIR
from labeler.errors import ModelUnavailable
from labeler.encoding.preprocessing import numpy_preprocess
from tests.cli import manage


def _images(world):
    return [Image.open(p).convert("RGB") for p in sorted(world.glob("*.png"))[:24]]


def test_preprocess_port_equals_open_clip(world):
    torch_encoder = load_encoder("labeler-tiny", "cpu", "torch")
    ours = numpy_preprocess(torch_encoder.model.visual.preprocess_cfg, torch_encoder.image_size)
    sizes = [(64, 64), (200, 90), (90, 200), (1024, 768), (65, 63)]
    for img in _images(world)[:3]:
        for size in sizes:
            resized = img.resize(size)
            assert np.array_equal(ours(resized), torch_encoder.transform(resized).numpy()), size


@pytest.mark.parametrize("mode, floor", [("fp32", 0.9999), ("int8", 0.99)])
def test_image_vectors_match_torch(onnx_cache, world, mode, floor):
    images = _images(world)
    ref_enc = load_encoder("labeler-tiny", "cpu", "torch")
    ref = ref_enc.encode_images([ref_enc.preprocess(i) for i in images])
    enc = load_encoder("labeler-tiny", "cpu", mode, onnx_cache)
    assert enc.mode == mode and enc.dim == ref_enc.dim and enc.logit_scale == pytest.approx(ref_enc.logit_scale)
    assert enc.preprocess_info == ref_enc.preprocess_info  # the catalog's model row is the same whatever the mode
    got = enc.encode_images([enc.preprocess(i) for i in images])
    assert got.shape == ref.shape
    assert float((got * ref).sum(axis=1).min()) >= floor
    # torch tensors are accepted too, for a loader that still makes them. int8 quantises each
    # batch's activations with one scale, so its vectors shift a little with their batchmates.
    again = enc.encode_images([ref_enc.preprocess(i) for i in images[:2]])
    if mode == "fp32":
        assert np.allclose(again, got[:2], atol=1e-5)
    else:
        assert float((again * got[:2]).sum(axis=1).min()) >= floor


def test_export_is_keyed_by_contents(tmp_path, onnx_cache):
    copy = tmp_path / "tiny-copy"
    shutil.copytree(TINY_DIR, copy)
    here = onnx_export.export_dir(onnx_cache, f"local-dir:{TINY_DIR}", None)
    assert onnx_export.export_dir(onnx_cache, f"local-dir:{copy}", None) == here  # same bytes elsewhere
    config = json.loads((copy / "open_clip_config.json").read_text())
    config["model_cfg"]["embed_dim"] = 64
    (copy / "open_clip_config.json").write_text(json.dumps(config))
    assert onnx_export.export_dir(onnx_cache, f"local-dir:{copy}", None) != here
    assert onnx_export.read_meta(here)["dim"] == 128


def test_a_preprocess_without_a_port_is_refused(tmp_path):
    """open_clip's 'longest' resize has no numpy port: the ONNX modes refuse it and name the fix."""
    copy = tmp_path / "tiny-longest"
    shutil.copytree(TINY_DIR, copy)
    config = json.loads((copy / "open_clip_config.json").read_text())
    config["preprocess_cfg"]["resize_mode"] = "longest"
    (copy / "open_clip_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelUnavailable, match="--mode torch"):
        load_encoder(f"local-dir:{copy}", "cpu", "fp32", tmp_path / "cache")
    assert not any((tmp_path / "cache").glob("*/meta.json"))  # nothing half-made is left to be reused


def test_unknown_mode_and_int8_on_a_gpu_are_refused():
    with pytest.raises(ModelUnavailable, match="fp32, int8, torch"):
        check_mode("fp16")
    with pytest.raises(ModelUnavailable, match="CPU only"):
        load_encoder("labeler-tiny", "cuda", "int8")


def _models(home):
    with sqlite3.connect(home / "catalog.db") as c:
        return dict(c.execute("select spec, (select count(*) from embeddings e where e.model_id = m.id) "
                              "from models m").fetchall()), dict(c.execute("select key, value from settings"))


@pytest.mark.slow
def test_a_new_collection_gets_the_mode_auto_gives_here_and_keeps_it(tmp_path, world, onnx_cache):
    """No --mode and no LABELER_ENCODER_MODE: int8 where this CPU kind's recipe is faithful and agrees
    with fp32's labels, else fp32; recorded, so a later run keeps it whatever auto would say then."""
    from labeler.encoding import cpu, int8
    from labeler.encoding.encoder import resolve_auto

    home = tmp_path / "home"
    env = {"LABELER_ENCODER_CACHE": str(onnx_cache)}
    report = json.loads(manage("--home", home, "--model", "labeler-tiny", "index", world, "--json",
                               env=env, expect=0).stdout)
    expected = resolve_auto("labeler-tiny", "cpu", onnx_cache)
    folder = onnx_export.export_dir(onnx_cache, f"local-dir:{TINY_DIR}", None)
    assert expected == ("int8" if int8.agrees(int8.read_choices(folder).get(cpu.detect().key)) else "fp32")
    models, settings = _models(home)
    assert settings["encoder_mode"] == expected and report["backend"]["mode"] == expected
    assert models == {("labeler-tiny#int8" if expected == "int8" else "labeler-tiny"): report["embedded"]}
    assert report["backend"].get("auto_picks_int8", False) == (expected == "int8")
    # the recorded mode holds: a later run without a flag uses it, and so does a fresh handle
    again = json.loads(manage("--home", home, "index", world, "--json", env=env, expect=0).stdout)
    assert again["embedded"] == 0 and _models(home)[1]["encoder_mode"] == expected
    assert in_session(Collection(Config(home=home, encoder_cache=onnx_cache)).models.mode) == expected


@pytest.mark.slow
def test_the_collection_records_its_mode(tmp_path, world, onnx_cache):
    """fp32 and int8 vectors live under two catalog identities; a search in the other mode fails clearly."""
    home = tmp_path / "home"
    env = {"LABELER_ENCODER_CACHE": str(onnx_cache)}
    n = json.loads(manage("--home", home, "--model", "labeler-tiny", "index", world, "--mode", "fp32", "--json",
                          env=env, expect=0).stdout)["embedded"]
    models, settings = _models(home)
    assert n > 20
    assert models == {"labeler-tiny": n} and settings["encoder_mode"] == "fp32"

    refused = manage("--home", home, "search", "a hammer", env={**env, "LABELER_ENCODER_MODE": "int8"}, expect=2)
    assert "encoder mode 'fp32', not 'int8'" in refused.stderr and "--mode int8" in refused.stderr
    assert _models(home)[0] == {"labeler-tiny": n}  # the refusal created nothing

    torch_mode = manage("--home", home, "search", "a hammer", "--json",
                        env={**env, "LABELER_ENCODER_MODE": "torch"}, expect=0)
    default = manage("--home", home, "search", "a hammer", "--json", env=env, expect=0)
    assert [h["image_id"] for h in json.loads(torch_mode.stdout)][:5] == \
        [h["image_id"] for h in json.loads(default.stdout)][:5]  # same vectors, same row

    report = json.loads(manage("--home", home, "index", world, "--mode", "int8", "--json",
                               env=env, expect=0).stdout)
    assert report["embedded"] == n
    models, settings = _models(home)
    assert models == {"labeler-tiny": n, "labeler-tiny#int8": n} and settings["encoder_mode"] == "int8"
    # from now on the collection's mode is int8, without a flag
    collection = Collection(Config(home=home, encoder_cache=onnx_cache))
    assert in_session(collection.models.mode) == "int8" and in_session(collection.models.encoder).mode == "int8"
    hits = json.loads(manage("--home", home, "search", "a hammer", "--json", env=env, expect=0).stdout)
    assert hits
