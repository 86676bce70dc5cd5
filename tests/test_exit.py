"""Every ``index`` exits with its own status, never an abort from a thread still loading the model.

A daemon thread still building an ONNX Runtime session when the interpreter tore down killed
``index`` with SIGABRT (exit 134, ``terminate called without an active exception``) after its JSON
was printed: 9 runs in 9 on a collection with nothing new to do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.cli import ROOT, manage_argv

pytestmark = pytest.mark.slow

RUNS = 6  # the abort hit 9 runs in 9; six runs catch it without costing a minute


def _index(home, world, cache) -> subprocess.Popen:
    env = {**os.environ, "LABELER_ENCODER_CACHE": str(cache)}
    return subprocess.Popen(manage_argv("--home", home, "index", world, "--json"), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def test_index_with_nothing_to_do_exits_0_every_time(indexed_home, world, onnx_cache, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(indexed_home, home)
    failures = []
    for _ in range(RUNS):
        code, out, err = _finish(_index(home, world, onnx_cache))
        if code != 0:
            failures.append((code, err.strip()[-300:]))
        else:
            assert json.loads(out)["embedded"] == 0
    assert not failures, f"{len(failures)} of {RUNS} runs did not exit 0: {failures[:3]}"


def test_index_while_another_process_exports_the_model_for_the_first_time(indexed_home, world, tmp_path):
    cache = tmp_path / "encoders"  # empty: both processes find no export and race to make it
    homes = []
    for name in ("a", "b"):
        homes.append(tmp_path / name)
        shutil.copytree(indexed_home, homes[-1])
    first = _index(homes[0], world, cache)
    second = _index(homes[1], world, cache)
    results = [_finish(first), _finish(second)]
    assert [code for code, _, _ in results] == [0, 0], [err.strip()[-500:] for _, _, err in results]
    assert any(cache.iterdir()), "neither run exported the model"
