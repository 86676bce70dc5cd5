"""A collection holds only files whose real path lies inside an indexed root, and serves only them.

Through the real CLI and the real served app: symlinks out of the collection are skipped and
reported, special filesystems are refused, and a file re-pointed or rewritten after indexing
is a 404 (and read again by the next ``index``), never whatever its name points to now.
"""

from __future__ import annotations

import os
import time

import pytest

from labeler.ingest import LEAVES
from tests.imagegen import write_good_images


def test_a_symlink_out_of_the_collection_is_skipped_and_reported(empty_cli, tmp_path):
    photos, outside = tmp_path / "photos", tmp_path / "outside"
    good = write_good_images(photos, 3)
    secret = write_good_images(outside, 2, seed=5)
    (photos / "x.png").symlink_to(secret[0])  # a file link out
    (photos / "elsewhere").symlink_to(outside)  # a folder link out
    (photos / "alias.png").symlink_to(good[0])  # a link that stays inside is followed

    report = empty_cli.json("index", photos)

    assert (report["files"], report["added"], report["failed"]) == (4, 4, 0)
    assert report["duplicates"] == 1  # alias.png is good[0] again
    assert report["skipped"] == 2
    assert {(s["path"], s["reason"]) for s in report["skips"]} == \
        {(str(photos / "x.png"), LEAVES), (str(photos / "elsewhere"), LEAVES)}
    assert empty_cli.json("stats")["images"] == 3
    human = empty_cli("index", photos)
    assert "2 skipped" in human.stdout and f"skipped: {photos / 'x.png'}: {LEAVES}" in human.stderr


def test_a_link_up_the_tree_indexes_nothing_outside_the_root(empty_cli, tmp_path):
    base = tmp_path / "base"
    inside = write_good_images(base / "a", 2)
    write_good_images(base / "other", 3, seed=3)
    (base / "a" / "b").mkdir()
    (base / "a" / "b" / "up").symlink_to("../..")  # a/b/up is base itself

    report = empty_cli.json("index", base / "a")

    assert report["files"] == len(inside) and report["added"] == len(inside)
    assert report["skips"] == [{"path": str(base / "a" / "b" / "up"), "reason": LEAVES}]


@pytest.mark.parametrize("root", ["/proc/self", "/proc", "/sys", "/dev", "/dev/shm", "link-to-proc"])
def test_special_filesystems_are_refused_at_once(empty_cli, tmp_path, root):
    if root == "link-to-proc":
        root = tmp_path / "innocent"
        root.symlink_to("/proc/self")
    if not os.path.exists(root):
        pytest.skip(f"{root} does not exist on this machine")
    started = time.monotonic()
    result = empty_cli("index", root, expect=2)
    assert time.monotonic() - started < 10
    error = result.stderr.strip()
    assert "\n" not in error and "special filesystem" in error and str(root) in error
    assert empty_cli.json("stats")["images"] == 0
