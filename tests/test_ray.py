"""The Ray engine against the local runner: the same folder indexed both ways gives the same catalog.

One real Ray cluster for the module (``ray start --head`` on loopback, tests/raycluster.py); every
index runs as a real ``manage.py`` subprocess, the Ray ones joining it with ``--address``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from labeler.store import db
from labeler.store.catalog import Image, ImageFile
from labeler.collection import Collection, in_session
from labeler.config import Config
from labeler.ingest.ray_engine import DecodeStage, EmbedStage
from labeler.errors import ConfigError
from labeler.ingest.walk import load_file
from labeler.encoding.preprocessing import NumpyPreprocess
from tests.cli import Cli, manage
from tests.imagegen import picture, write_broken_corpus, write_good_images
from tests.raycluster import ray_head

pytestmark = pytest.mark.slow  # a Ray cluster and a dozen subprocesses: about a minute

BROKEN = 7  # files in write_broken_corpus


@pytest.fixture(scope="module")
def head():
    """The README's "A cluster of CPU machines", on one machine: a head and a second raylet joined
    with ``ray start --address`` on their own ports, every node and the driver with the token and
    ``RAY_AUTH_MODE=token`` (without it Ray 2.60 refuses the worker). One cluster for the module:
    starting and stopping one costs about a minute."""
    with ray_head(num_cpus=1, nodes=2) as cluster:
        ray = str(Path(sys.executable).parent / "ray")
        deadline = time.monotonic() + 120  # "Ray runtime started" comes before the head's status lists the node
        while True:
            status = subprocess.run([ray, "status", f"--address={cluster.address}"], capture_output=True, text=True,
                                    env={**os.environ, **cluster.env}, timeout=120)
            if status.stdout.count(" node_") == 2 or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert status.stdout.count(" node_") == 2, status.stdout + status.stderr  # two raylets serve
        yield cluster


@pytest.fixture
def folder(tmp_path) -> Path:
    """Good images, a duplicate of one of them and every kind of broken file."""
    folder = tmp_path / "photos"
    good = write_good_images(folder, 10)
    shutil.copy(good[0], folder / f"copy_of_first{good[0].suffix}")
    write_broken_corpus(folder / "broken")
    return folder


def index(home: Path, folder: Path, model: str, *flags: str, env: dict | None = None) -> dict:
    """``manage.py index`` in a real process: the README's command against the cluster."""
    import json

    done = manage("--home", home, "--model", model, "index", folder, "--json", *flags, env=env, expect=0)
    return json.loads(done.stdout)


def index_locally(home: Path, folder: Path, model: str) -> dict:
    """The local runner's ``index``, in this process (the model is loaded here already)."""
    report = Cli(home, model).json("index", folder)
    db.dispose_engines()
    return report


def catalog(home: Path, model: str) -> tuple[list[tuple], list[tuple], dict[str, np.ndarray]]:
    """(file rows, image rows, sha256 → vector), each keyed by content and path, not by id."""
    collection = Collection(Config(home=home, model=model))
    with collection.session() as s:
        files = sorted(s.execute(select(ImageFile.path, ImageFile.size, ImageFile.mtime, ImageFile.status,
                                        ImageFile.error, Image.sha256)
                                 .join(Image, Image.id == ImageFile.image_id, isouter=True)).all())
        images = sorted(s.execute(select(Image.sha256, Image.size, Image.width, Image.height, Image.format,
                                         Image.status)).all())
        sha = dict(s.execute(select(Image.id, Image.sha256)).all())
    ids, vectors = in_session(collection.vectors.read)
    db.dispose_engines()
    return [tuple(r) for r in files], [tuple(r) for r in images], {sha[int(i)]: v for i, v in zip(ids, vectors)}


def assert_same_collection(local: Path, ray: Path, model: str) -> None:
    local_files, local_images, local_vectors = catalog(local, model)
    ray_files, ray_images, ray_vectors = catalog(ray, model)
    assert ray_files == local_files
    assert ray_images == local_images
    assert sorted(ray_vectors) == sorted(local_vectors)
    for sha256, vector in local_vectors.items():
        assert float(vector @ ray_vectors[sha256]) >= 0.9999, sha256
    assert Cli(ray, model).json("check")["ok"] is True
    db.dispose_engines()


def comparable(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "seconds"} | {
        "failures": sorted(report["failures"], key=lambda f: f["path"])}


def test_the_readmes_cluster_gives_the_local_runners_catalog_and_stays_incremental(head, folder, tmp_path,
                                                                                   model_spec):
    """``index --address`` against the two raylets gives the local runner's catalog, vectors
    included, and ``check`` is clean; reruns and changed files agree with the local runner too."""
    local, ray = tmp_path / "local", tmp_path / "ray"
    flags = ("--address", head.address)

    first_local = index_locally(local, folder, model_spec)
    first_ray = index(ray, folder, model_spec, *flags, env=head.env)
    assert comparable(first_ray) == comparable(first_local)
    assert first_ray["failed"] == BROKEN and first_ray["duplicates"] == 1
    assert first_ray["embedded"] == first_ray["added"] - 1  # the copy shares its original's vector
    assert_same_collection(local, ray, model_spec)

    # A rerun reads nothing: unchanged files are skipped and the failures are reported again.
    again = index(ray, folder, model_spec, *flags, env=head.env)
    assert (again["unchanged"], again["failed"], again["added"], again["embedded"]) == (
        first_ray["added"], BROKEN, 0, 0)
    assert sorted(f["path"] for f in again["failures"]) == sorted(f["path"] for f in first_ray["failures"])

    # New, changed, fixed and removed files: both runners agree on what changed.
    picture(99).save(folder / "new.png")
    changed = next(folder.glob("copy_of_first.*"))
    picture(98).save(changed, changed.suffix.lstrip(".").upper().replace("JPG", "JPEG"))
    picture(97).save(folder / "broken" / "zero_0.jpg", "JPEG")  # a failure fixed
    sorted(folder.glob("good_*"))[-1].unlink()
    second_local = index_locally(local, folder, model_spec)
    second_ray = index(ray, folder, model_spec, env={**head.env, "LABELER_ENGINE": "ray",
                                                     "RAY_ADDRESS": head.address})
    assert comparable(second_ray) == comparable(second_local)
    assert (second_ray["added"], second_ray["missing"], second_ray["failed"]) == (3, 1, BROKEN - 1)
    assert_same_collection(local, ray, model_spec)


def test_cuda_on_a_cluster_without_gpus_is_refused(head, folder, tmp_path, model_spec):
    done = manage("--home", tmp_path / "home", "--model", model_spec, "--device", "cuda", "index", folder,
                  "--address", head.address, env=head.env, expect=2)
    assert "the Ray cluster has no GPUs" in done.stderr


def test_without_ray_the_engine_names_the_install(tmp_path, folder, model_spec):
    # A `ray` that cannot be imported stands in for an environment without the extra.
    shadow = tmp_path / "no-ray" / "ray"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    done = manage("--home", tmp_path / "home", "--model", model_spec, "index", folder,
                  env={"LABELER_ENGINE": "ray", "PYTHONPATH": str(shadow.parent)}, expect=2)
    assert "pip install 'labeler[ray]'" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_engine_setting():
    assert Config.from_env({}).engine == "local"
    assert Config.from_env({"LABELER_ENGINE": "Ray"}).engine == "ray"
    with pytest.raises(ConfigError, match="LABELER_ENGINE"):
        Config.from_env({"LABELER_ENGINE": "spark"})


def test_decode_hands_uint8_crops_to_the_actor_which_makes_the_local_runners_vectors(tmp_path, model_spec):
    # The stages in this process, without Ray: what crosses the object store between them is
    # uint8, and the actor's normalising gives the very model inputs the local runner embeds.
    config = Config(home=tmp_path / "home", model=model_spec)
    collection = Collection(config)
    encoder = in_session(collection.models.encoder)
    assert isinstance(encoder.preprocess, NumpyPreprocess)
    paths = write_good_images(tmp_path / "photos", 5)
    broken = sorted(write_broken_corpus(tmp_path / "broken"))[0]
    paths.insert(2, Path(broken))
    draft = max(config.thumbnail_size, encoder.image_size)
    batch = {"image_id": np.full(len(paths), -1), "path": np.array([str(p) for p in paths], dtype=object)}

    decoded = DecodeStage(config, encoder.preprocess, draft, None)(batch)
    size = encoder.image_size
    assert decoded["pixels"].dtype == np.uint8 and decoded["pixels"].shape == (len(paths), 3, size, size)
    assert decoded["error"][2] and not decoded["pixels"][2].any()
    embedded = EmbedStage(model_spec, None, in_session(collection.models.mode),
                          str(config.encoder_cache) if config.encoder_cache else None)(decoded)

    good = [p for i, p in enumerate(paths) if i != 2]
    local = encoder.encode_images([load_file(p, config, preprocess=encoder.preprocess, draft_size=draft).pixels
                                   for p in good])
    vectors = np.delete(embedded["vector"], 2, axis=0)
    assert np.abs(vectors - local).max() < 1e-5
    assert not embedded["vector"][2].any()  # a failed file has no vector
    db.dispose_engines()
