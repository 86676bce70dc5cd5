"""Shared fixtures: a real model, real image folders and a real catalog under a temporary home."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from labeler.store import db
from labeler.collection import Collection
from labeler.config import Config
from labeler.encoding.model_spec import TINY_DIR, TINY_NAME
from tests.cli import Cli


WORLD_SIZE = 40


@pytest.fixture(scope="session")
def model_spec() -> str:
    """The bundled demo model: real open_clip weights that do zero-shot matching.

    ``LABELER_TEST_MODEL`` runs the suite on another spec (real CLIP, say); the tests that
    check labeler-tiny's own quality still use labeler-tiny.
    """
    spec = os.environ.get("LABELER_TEST_MODEL", TINY_NAME)
    if spec == TINY_NAME and not (TINY_DIR / "open_clip_model.safetensors").exists():
        raise RuntimeError("labeler-tiny weights are missing: they are committed under labeler/models/labeler-tiny")
    return spec


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Path:
    """A small workshop world: images plus truth.csv."""
    from labeler.demo_world import generate_world

    folder = tmp_path_factory.mktemp("world")
    generate_world(folder, WORLD_SIZE, seed=7, size=64)
    return folder


@pytest.fixture(scope="session")
def indexed_home(tmp_path_factory, model_spec, world) -> Path:
    """A home with the world indexed once; each test works on its own copy (``indexed_collection``)."""
    from labeler.ingest.run import index_paths

    home = tmp_path_factory.mktemp("indexed") / "home"
    index_paths(Collection(Config(home=home, model=model_spec)), [world])
    db.dispose_engines()  # checkpoint the WAL so a file copy is the whole catalog
    return home


def home_of_first_images(world: Path, root: Path, count: int, model_spec: str) -> Path:
    """A new home under ``root`` with only the world's first ``count`` images indexed (for the
    commands that refuse a collection too small to work on)."""
    from labeler.ingest.run import index_paths

    folder = root / f"first-{count}"
    folder.mkdir()
    for path in sorted(world.glob("img_*"))[:count]:
        shutil.copy(path, folder / path.name)
    home = root / f"home-{count}"
    index_paths(Collection(Config(home=home, model=model_spec)), [folder])
    return home


@pytest.fixture
def indexed_collection(indexed_home, model_spec, tmp_path) -> Collection:
    """This test's own copy of the indexed world (no labels yet)."""
    home = tmp_path / "home"
    shutil.copytree(indexed_home, home)
    return Collection(Config(home=home, model=model_spec))


@pytest.fixture
def indexed_cli(indexed_collection, model_spec) -> Cli:
    """``manage.py`` on ``indexed_collection``'s home."""
    return Cli(indexed_collection.config.home, model_spec)


@pytest.fixture
def empty_home(tmp_path: Path) -> Path:
    """A home folder that does not exist yet; ``empty_config``, ``empty_collection`` and ``empty_cli`` use it."""
    return tmp_path / "home"


@pytest.fixture
def empty_config(empty_home: Path, model_spec: str) -> Config:
    return Config(home=empty_home, model=model_spec)


@pytest.fixture
def empty_collection(empty_config: Config) -> Collection:
    return Collection(empty_config)


@pytest.fixture
def empty_cli(empty_home: Path, model_spec: str) -> Cli:
    """``manage.py`` on ``empty_home``, which a test fills through it."""
    return Cli(empty_home, model_spec)


# With LABELER_NO_SKIPS=1 (``make test``, and so CI) a skipped test fails the run: a machine that
# lacks a part (chromium, PostgreSQL, Playwright) is seen, not silently passed.
_skipped: list[str] = []


def pytest_collectreport(report) -> None:
    if report.skipped:  # a whole module skipped, e.g. by importorskip
        _skipped.append(report.nodeid)


def pytest_runtest_logreport(report) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus) -> None:
    if _skipped and os.environ.get("LABELER_NO_SKIPS") == "1" and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter) -> None:
    if _skipped and os.environ.get("LABELER_NO_SKIPS") == "1":
        terminalreporter.write_line(f"LABELER_NO_SKIPS=1: {len(_skipped)} skipped, so the run fails "
                                    "(scripts/setup.sh --test installs what the tests need)", red=True)


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory) -> Path:
    """A fresh folder of ONNX exports, with labeler-tiny exported once (fp32 and int8)."""
    from labeler.encoding.encoder import load_encoder

    cache = tmp_path_factory.mktemp("encoders")
    for mode in ("fp32", "int8"):
        load_encoder(TINY_NAME, "cpu", mode, cache)
    return cache
