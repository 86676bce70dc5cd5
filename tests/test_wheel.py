"""A built wheel works on its own: installed into a fresh venv and run outside the checkout.

The venv reuses this interpreter's site-packages for the dependencies (torch is not installed
twice) through ``.pth`` lines; the ``.pth`` files of those folders, such as an editable
install's finder, are not processed, so ``labeler`` can only come from the wheel.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.cli import serving

ROOT = Path(__file__).resolve().parent.parent
# What the wheel is built from; the rest of the checkout (tests, docs, .venv) stays out of the copy.
SOURCES = ("pyproject.toml", "README.md", "labeler", "templates", "static", "migrations", "prompt_sets")
RESOURCES = ("templates", "static", "migrations", "prompt_sets")


def _copy_sources(into: Path) -> Path:
    """A clean copy of the sources: an in-tree build would reuse a stale ``build/`` folder."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    into.mkdir(parents=True)
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, into / name, ignore=ignore)
        else:
            shutil.copy2(source, into / name)
    return into


def _build_wheel(sources: Path, out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "--disable-pip-version-check", "-q", "-w", str(out), str(sources)],
                   check=True, capture_output=True, text=True)
    (wheel,) = out.glob("labeler-*.whl")
    return wheel


def _fresh_venv(folder: Path) -> Path:
    """A venv whose dependencies resolve to this interpreter's site-packages; returns its site-packages."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, capture_output=True)
    ask = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([str(folder / "bin" / "python"), "-c", ask],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "labeler-test-deps.pth").write_text("".join(f"{path}\n" for path in _dependency_paths()))
    return site


def _dependency_paths() -> list[str]:
    """This interpreter's site-packages and the folders their .pth files added: sys.path from the first on."""
    sites = {Path(path).resolve() for path in site.getsitepackages()}
    resolved = [Path(entry).resolve() if entry else None for entry in sys.path]
    first = next(i for i, path in enumerate(resolved) if path in sites)
    return [entry for entry, path in zip(sys.path[first:], resolved[first:]) if path and path.is_dir() and path != ROOT]


def test_wheel_carries_every_module_and_resource(tmp_path):
    sources = _copy_sources(tmp_path / "src")
    names = set(zipfile.ZipFile(_build_wheel(sources, tmp_path / "dist")).namelist())
    wanted = {f"labeler/{path.relative_to(sources / 'labeler').as_posix()}"
              for path in (sources / "labeler").rglob("*") if path.is_file()}
    for resource in RESOURCES:
        wanted |= {f"labeler/{resource}/{path.relative_to(sources / resource).as_posix()}"
                   for path in (sources / resource).rglob("*") if path.is_file()}
    assert "labeler/py.typed" in wanted
    missing = sorted(wanted - names)
    assert not missing, f"add their packages to [tool.setuptools] in pyproject.toml: {missing}"


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    wheel = _build_wheel(_copy_sources(tmp_path / "src"), tmp_path / "dist")
    venv = tmp_path / "venv"
    site = _fresh_venv(venv)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                    "--disable-pip-version-check", str(wheel)], check=True, capture_output=True, text=True)

    work = tmp_path / "elsewhere"  # a cwd outside the checkout, so nothing is imported from it
    work.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LABELER_", "PYTHON"))}

    def labeler(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        # no --home: the default ./instance, relative, as a user runs it
        result = subprocess.run([str(venv / "bin" / "labeler"), *args], cwd=work, env=env, input=stdin,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import labeler; print(labeler.__file__)"],
                           cwd=work, env=env, check=True, capture_output=True, text=True).stdout.strip()
    assert Path(where).is_relative_to(site), where

    labeler("db", "upgrade")
    labeler("demo-images", str(work / "photos"), "--count", "12", "--size", "64")
    assert json.loads(labeler("index", str(work / "photos"), "--json").stdout)["embedded"] == 12
    assert json.loads(labeler("label", "--prompt-set", "workshop", "--json").stdout)["labeled"] > 0

    assert (work / "instance" / "catalog.db").is_file()

    # the Python API from the installed wheel: what the CLI's --json prints, and nothing else printed
    script = "import labeler; c = labeler.open('instance'); print(c.search('hammer', k=3))"
    api = subprocess.run([str(venv / "bin" / "python"), "-c", script], cwd=work, env=env,
                         capture_output=True, text=True, timeout=300)
    assert api.returncode == 0, api.stderr
    hits = ast.literal_eval(api.stdout)
    assert len(hits) == 3 and hits == json.loads(labeler("search", "hammer", "-k", "3", "--json").stdout)
    labeler("user", "add", "ada", "--role", "admin", "--password-stdin", stdin="correct horse battery staple\n")
    bearer = {"Authorization": f"Bearer {labeler('user', 'token', 'ada').stdout.strip()}"}

    with serving([venv / "bin" / "labeler", "serve"], cwd=work, env=env) as server:
        status, body = server.get("/auth/login")
        assert status == 200 and b'data-testid="login-form"' in body
        assert server.get("/static/style.css")[0] == 200
        for image_id in range(1, 13):  # the relative default home once made every thumbnail a 500
            status, body = server.get(f"/images/{image_id}/thumb", headers=bearer)
            assert status == 200 and body[:3] == b"\xff\xd8\xff", (image_id, status, body[:200])
