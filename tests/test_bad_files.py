"""Bad files never stop a run: names that are not UTF-8, files over the size limit, a full disk.

Every file here is real: bytes on disk with a name the kernel accepts, a sparse 64 GB file, a real
tmpfs that fills up. A bad file is skipped or failed with its reason; the rest of the run goes on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labeler.collection import Collection
from labeler.config import Config
from labeler.errors import ConfigError
from labeler.ingest.run import index_paths
from labeler.ingest.walk import NOT_UTF8
from tests.cli import ROOT, manage_argv
from tests.imagegen import jpeg_bytes, write_good_images

MB = 1 << 20


def _bad_name(folder: Path, name: bytes) -> bytes:
    return os.fsencode(folder) + b"/" + name


def test_names_that_are_not_utf8_are_skipped_with_a_reason_and_the_rest_is_indexed(tmp_path, model_spec):
    photos = tmp_path / "photos"
    good = write_good_images(photos, 3, seed=11)
    with open(_bad_name(photos, b"bad\xff\xfename.png"), "wb") as f:
        f.write(good[0].read_bytes() + b"\x00")  # other content: not a duplicate of a good one
    os.mkdir(_bad_name(photos, b"caf\xe9"))  # Latin-1 folder name, with an image inside
    with open(_bad_name(photos, b"caf\xe9/inside.jpg"), "wb") as f:
        f.write(jpeg_bytes(5))
    with open(_bad_name(photos, b"notes\xff.txt"), "wb") as f:
        f.write(b"not an image: not reported at all")

    done = subprocess.run(manage_argv("--home", tmp_path / "home", "--model", model_spec, "index", photos, "--json"),
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert (report["added"], report["failed"], report["files"]) == (3, 0, 3)
    assert sorted(report["skips"], key=lambda s: s["path"]) == [
        {"path": f"{photos}/bad\\xff\\xfename.png", "reason": NOT_UTF8},
        {"path": f"{photos}/caf\\xe9", "reason": NOT_UTF8},
    ]
    # The plain output says the same, one line per skip, and a rerun is unchanged.
    again = subprocess.run(manage_argv("--home", tmp_path / "home", "--model", model_spec, "index", photos),
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr[-2000:]
    assert f"skipped: {photos}/bad\\xff\\xfename.png: {NOT_UTF8}" in again.stderr
    assert "3 files: 0 added, 3 unchanged" in again.stdout

    # A root that is itself a bad name is skipped the same way, not a traceback.
    root = _bad_name(photos, b"caf\xe9")
    alone = subprocess.run([sys.executable, str(ROOT / "manage.py"), "--home", str(tmp_path / "home"), "--model",
                            model_spec, "index", root, "--json"], cwd=ROOT, capture_output=True, timeout=300)
    assert alone.returncode == 0, alone.stderr[-2000:]
    assert json.loads(alone.stdout)["skips"] == [{"path": f"{photos}/caf\\xe9", "reason": NOT_UTF8}]


def _padded_jpeg(path: Path, size: int, seed: int) -> Path:
    """A valid JPEG of exactly ``size`` bytes: decoders stop at its end marker, the zeros after it
    are a hole in the file (sparse), so a large one costs no disk."""
    data = jpeg_bytes(seed)
    with open(path, "wb") as f:
        f.write(data)
        f.truncate(size)
    return path


def test_the_size_limit_is_checked_at_its_edge_before_reading(tmp_path, model_spec):
    photos = tmp_path / "photos"
    photos.mkdir()
    at_limit = _padded_jpeg(photos / "at-limit.jpg", MB, seed=1)
    over = _padded_jpeg(photos / "over.jpg", MB + 1, seed=2)
    huge = _padded_jpeg(photos / "huge.jpg", 64 << 30, seed=3)  # 64 GB, sparse: reading it would never end

    collection = Collection(Config(home=tmp_path / "home", model=model_spec, max_file_mb=1))
    report = index_paths(collection, [photos])
    assert (report.added, report.failed) == (1, 2)
    reasons = {Path(f["path"]).name: f["reason"] for f in report.failures}
    assert reasons == {
        "over.jpg": "larger than LABELER_MAX_FILE_MB (1 MB): 1 MB; raise the limit to index it",
        "huge.jpg": "larger than LABELER_MAX_FILE_MB (1 MB): 65,536 MB; raise the limit to index it",
    }
    with collection.session() as s:
        from labeler.store.catalog import ImageFile

        stored = {Path(r.path).name: (r.status, r.error) for r in s.query(ImageFile)}
    assert stored["at-limit.jpg"] == ("ok", None)
    assert stored["huge.jpg"] == ("failed", reasons["huge.jpg"])  # recorded: a rerun says it again without reading
    assert at_limit.stat().st_size == MB and over.stat().st_size == MB + 1 and huge.stat().st_size == 64 << 30

    # Raising the limit is all it takes: the refused file that now fits is read, the other is not.
    raised = index_paths(Collection(collection.config.with_(max_file_mb=2)), [photos])
    assert (raised.added, raised.unchanged, raised.failed) == (1, 1, 1)
    assert [Path(f["path"]).name for f in raised.failures] == ["huge.jpg"]


def test_limits_come_from_the_environment_and_refuse_nonsense():
    assert Config.from_env({}).max_file_mb == 512
    assert Config.from_env({"LABELER_MAX_FILE_MB": "1"}).max_file_mb == 1
    for bad in ("0", "-5", "lots"):
        with pytest.raises(ConfigError, match="LABELER_MAX_FILE_MB"):
            Config.from_env({"LABELER_MAX_FILE_MB": bad})


def _peak_rss_mb(argv: list[str], env: dict) -> float:
    """Runs ``argv`` and returns its own peak resident memory, from the kernel's accounting."""
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.returncode == 0, process.stderr.read()[-2000:]
    return usage.ru_maxrss / 1024


def test_a_large_file_is_read_by_streaming_not_held_whole(tmp_path, model_spec):
    small, large = tmp_path / "small", tmp_path / "large"
    small.mkdir()
    large.mkdir()
    _padded_jpeg(small / "a.jpg", 100_000, seed=4)
    _padded_jpeg(large / "a.jpg", 400 * MB, seed=4)  # under the default limit: read, hashed and indexed
    env = {**os.environ, "LABELER_WORKERS": "1"}
    base = _peak_rss_mb(manage_argv("--home", tmp_path / "h1", "--model", model_spec, "index", small), env)
    peak = _peak_rss_mb(manage_argv("--home", tmp_path / "h2", "--model", model_spec, "index", large), env)
    assert peak < base + 100, (base, peak)  # held whole, it would be base + 400


TMPFS_SCRIPT = """
set -e
mount -t tmpfs -o size=$SIZE tmpfs "$HOMEDIR"
set +e
"$@" > first.out 2> first.err; echo $? > first.rc
set -e
mount -o remount,size=64m "$HOMEDIR"
"$@" --json > second.out 2> second.err; echo $? > second.rc
"$@" --json > third.out 2> /dev/null
"""


def _in_private_tmpfs() -> list[str] | None:
    """A command prefix that runs a shell in its own mount namespace, where it may mount a tmpfs
    (root directly; anyone else as root of a user namespace); None where neither is allowed."""
    if shutil.which("unshare") is None:
        return None
    prefix = ["unshare", "--mount"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    probe = subprocess.run([*prefix, "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True)
    return prefix if probe.returncode == 0 else None


@pytest.mark.parametrize("size,when", [("150k", "making the catalog"), ("1500k", "halfway through")])
def test_a_full_disk_during_index_is_one_line_and_loses_nothing(tmp_path, model_spec, size, when):
    prefix = _in_private_tmpfs()
    if prefix is None:
        pytest.skip("no mount namespace here: a small tmpfs cannot be made to fill")
    photos = tmp_path / "photos"
    write_good_images(photos, 200, seed=21)
    home = tmp_path / "home"
    home.mkdir()
    argv = manage_argv("--home", home, "--model", model_spec, "index", photos)
    subprocess.run([*prefix, "sh", "-c", TMPFS_SCRIPT, "sh", *argv], cwd=tmp_path, check=True, timeout=600,
                   env={**os.environ, "HOMEDIR": str(home), "SIZE": size})
    first_err = (tmp_path / "first.err").read_text()
    assert (tmp_path / "first.rc").read_text().strip() == "1", first_err
    lines = first_err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: disk full"), first_err
    assert (tmp_path / "second.rc").read_text().strip() == "0", (tmp_path / "second.err").read_text()
    second = json.loads((tmp_path / "second.out").read_text())
    third = json.loads((tmp_path / "third.out").read_text())
    assert second["added"] + second["unchanged"] == 200 and second["failed"] == 0
    if when == "halfway through":  # what the full run catalogued is kept, not redone
        assert second["unchanged"] > 0, second
    assert (third["unchanged"], third["added"], third["embedded"]) == (200, 0, 0)


def test_a_second_index_on_one_home_exits_2_naming_the_first(tmp_path, model_spec):
    import fcntl

    photos = tmp_path / "photos"
    write_good_images(photos, 2, seed=41)
    home = tmp_path / "home"
    home.mkdir()
    with open(home / ".index.lock", "a+") as lock:  # a first run holds the lock, as index does
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("4242")
        lock.flush()
        done = subprocess.run(manage_argv("--home", home, "--model", model_spec, "index", photos),
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stderr[-2000:]
        assert done.stderr.strip() == (f"error: another index is running on {home} (pid 4242); wait for it to "
                                       "finish, then run this again")
        assert sorted(p.name for p in home.iterdir()) == [".index.lock", "catalog.db"]  # nothing indexed
    after = subprocess.run(manage_argv("--home", home, "--model", model_spec, "index", photos, "--json"),
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert after.returncode == 0 and json.loads(after.stdout)["added"] == 2, after.stderr[-2000:]
