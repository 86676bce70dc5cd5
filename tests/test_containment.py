"""A collection holds only files whose real path lies inside an indexed root, and serves only them.

Through the real CLI and the real served app: symlinks out of the collection are skipped and
reported, special filesystems are refused, and a file re-pointed or rewritten after indexing
is a 404 (and read again by the next ``index``), never whatever its name points to now.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from labeler.store import db, users
from labeler.store.catalog import ImageFile
from labeler.config import Config
from labeler.ingest.walk import LEAVES
from tests.imagegen import picture, write_good_images, write_odd_shapes, write_tiny_images
from tests.web.conftest import PASSWORD, SECRET, login


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


@pytest.fixture
def link_and_target(tmp_path: Path) -> tuple[Path, Path]:
    """``photos/x.png``, a link to a file inside the root whose own name is not an image's,
    so the image has no other path to be served from."""
    photos = tmp_path / "photos"
    (photos / "data").mkdir(parents=True)
    target = photos / "data" / "blob.bin"
    picture(77).save(target, "PNG")
    (photos / "x.png").symlink_to(target)
    return photos / "x.png", target


def serve_client(home: Path, model: str):
    from labeler.web import create_app

    config = Config(home=home, model=model, secret_key=SECRET)
    with db.session_scope(config) as s:
        users.create_user(s, "rita", PASSWORD, "reviewer")
    client = create_app(config, {"TESTING": True}).test_client()
    login(client, "rita")
    return client, config


def file_row(config: Config, path: Path) -> ImageFile:
    with db.session_scope(config) as s:
        row = s.scalar(select(ImageFile).where(ImageFile.path == str(path)))
        s.expunge(row)
        return row


def test_a_link_re_pointed_after_indexing_is_a_404_not_the_new_target(empty_cli, model_spec, link_and_target):
    link, target = link_and_target
    photos = link.parent
    assert empty_cli.json("index", photos)["added"] == 1
    client, config = serve_client(empty_cli.home, model_spec)
    image_id = file_row(config, link).image_id
    served = client.get(f"/images/{image_id}/full")
    assert served.status_code == 200 and served.data == target.read_bytes()

    link.unlink()
    link.symlink_to("/etc/passwd")
    response = client.get(f"/images/{image_id}/full")

    assert response.status_code == 404 and b"root:" not in response.data
    assert file_row(config, link).status == "changed"
    again = empty_cli.json("index", photos)  # the link now leaves the collection
    assert again["skips"] == [{"path": str(link), "reason": LEAVES}] and again["missing"] == 1
    assert file_row(config, link).status == "missing"


def test_a_file_rewritten_after_indexing_is_a_404_until_indexed_again(empty_cli, model_spec, tmp_path):
    photos = tmp_path / "photos"
    path = write_good_images(photos, 2)[0]
    empty_cli.json("index", photos)
    client, config = serve_client(empty_cli.home, model_spec)
    image_id = file_row(config, path).image_id
    assert client.get(f"/images/{image_id}/full").status_code == 200

    picture(999, (50, 50)).save(path, "PNG")  # other bytes at the same path
    assert client.get(f"/images/{image_id}/full").status_code == 404
    assert file_row(config, path).status == "changed"

    report = empty_cli.json("index", photos)
    assert (report["added"], report["unchanged"], report["embedded"]) == (1, 1, 1)
    new_id = file_row(config, path).image_id
    served = client.get(f"/images/{new_id}/full")
    assert served.status_code == 200 and served.data == path.read_bytes()


def test_embed_never_reads_a_link_re_pointed_out_of_the_collection(empty_cli, link_and_target, tmp_path):
    link, _ = link_and_target
    outside = write_good_images(tmp_path / "outside", 1, seed=9)[0]
    write_good_images(link.parent, 2)
    assert empty_cli.json("ingest", link.parent)["added"] == 3
    link.unlink()
    link.symlink_to(outside)

    assert empty_cli.json("embed")["embedded"] == 2  # the two plain files; not the outside picture
    assert empty_cli.json("stats")["embedded"] == 2


def test_tiny_valid_images_are_indexed_not_failed(empty_cli, tmp_path):
    photos = tmp_path / "photos"
    tiny = write_tiny_images(photos)

    report = empty_cli.json("index", photos)

    assert report["failures"] == [] and report["failed"] == 0
    assert (report["added"], report["embedded"]) == (len(tiny), len(tiny))
    assert empty_cli.json("stats")["images"] == len(tiny)


def test_valid_images_of_extreme_shapes_are_indexed_and_letterboxed(empty_cli, empty_config, tmp_path):
    from PIL import Image as PILImage

    from labeler.store.catalog import Image as CatalogImage
    from labeler.ingest.walk import thumbnail_path

    photos = tmp_path / "photos"
    odd = write_odd_shapes(photos)

    report = empty_cli.json("index", photos)

    assert report["failures"] == [] and report["failed"] == 0
    assert (report["added"], report["embedded"]) == (len(odd), len(odd))
    with db.session_scope(empty_config) as s:
        hashes = [image.sha256 for image in s.scalars(select(CatalogImage))]
    for sha in hashes:  # a square thumbnail that shows the whole strip, not a 256×1 sliver
        with PILImage.open(thumbnail_path(empty_config, sha)) as thumb:
            assert thumb.width == thumb.height
