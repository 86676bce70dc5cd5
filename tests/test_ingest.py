"""Ingest and index: real files (good and broken), real SQLite via migrations, real FAISS, real model."""

from __future__ import annotations

import hashlib
import os
import shutil

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from labeler.store.catalog import Embedding, Image, ImageFile
from labeler.encoding.images import BadImage, decode
from labeler.collection import in_session
from tests.imagegen import (jpeg_with_orientation, png_with_header, write_broken_corpus,
                            write_good_images)

# What the recorded reason says for each kind of broken file.
REASON = {"zero-byte": "empty file", "truncated": "truncated", "non-image": "not an image",
          "decompression bomb": "decompression bomb", "absurd dimensions": "absurd dimensions",
          "unreadable": "unreadable"}


def test_index_survives_every_kind_of_broken_file(empty_cli, tmp_path):
    photos = tmp_path / "photos"
    good = write_good_images(photos, 24)
    broken = write_broken_corpus(photos / "broken")

    report = empty_cli.json("index", photos)

    assert report["added"] == len(good)
    assert report["embedded"] == len(good)
    assert report["failed"] == len(broken)
    reasons = {f["path"]: f["reason"] for f in report["failures"]}
    assert set(reasons) == set(broken)
    for path, kind in broken.items():
        assert REASON[kind] in reasons[path], (kind, reasons[path])
    stats = empty_cli.json("stats")
    assert (stats["images"], stats["embedded"], stats["failed"], stats["missing"]) == (len(good), len(good), len(broken), 0)
    check = empty_cli.json("check")  # issue 11 added the index's type and measured recall
    assert (check["ok"], check["problems"], check["repaired"], check["index"]["vectors"]) == (True, [], False, len(good))


def test_rerun_is_incremental_and_tracks_moves_and_deletions(empty_cli, tmp_path, empty_collection):
    photos = tmp_path / "photos"
    good = write_good_images(photos, 12)
    empty_cli.json("index", photos)

    again = empty_cli.json("index", photos)
    assert (again["added"], again["unchanged"], again["embedded"]) == (0, 12, 0)

    (photos / "moved").mkdir()
    shutil.move(good[0], photos / "moved" / good[0].name)
    good[1].unlink()
    shutil.copy(good[2], photos / "copy_of_2.png")
    write_good_images(photos / "new", 2, seed=7)
    report = empty_cli.json("index", photos)

    assert report["embedded"] == 2  # only the new content; moved and copied files reuse vectors
    assert report["moved"] == 1 and report["missing"] == 2 and report["duplicates"] == 2
    stats = empty_cli.json("stats")
    assert (stats["images"], stats["missing"], stats["embedded"]) == (14, 1, 14)
    with empty_collection.session() as s:
        moved = s.scalar(select(ImageFile).where(ImageFile.path == str(good[0])))
        assert moved.status == "missing"  # never silently dropped
        assert s.get(Image, moved.image_id).status == "ok"
        copy = s.scalar(select(ImageFile).where(ImageFile.path == str(photos / "copy_of_2.png")))
        original = s.scalar(select(ImageFile).where(ImageFile.path == str(good[2])))
        assert copy.image_id == original.image_id
        assert s.scalar(select(func.count()).select_from(Embedding)) == 14
    assert empty_cli.json("check")["ok"]
    # The deleted image is gone from search results' index, the moved one is not.
    ids = set(in_session(empty_collection.index_keeper.get).ids().tolist())
    with empty_collection.session() as s:
        gone = s.scalar(select(ImageFile.image_id).where(ImageFile.path == str(good[1])))
    assert gone not in ids and moved.image_id in ids

    # The deleted file comes back: its image is present again and searchable.
    write_good_images(photos, 2)  # rewrites good_0_0000 and good_0_0001 with the same content
    report = empty_cli.json("index", photos)
    assert report["embedded"] == 0
    assert empty_cli.json("stats")["missing"] == 0
    assert empty_cli.json("check")["ok"]


def test_changed_file_is_re_embedded(empty_cli, tmp_path):
    photos = tmp_path / "photos"
    paths = write_good_images(photos, 3)
    empty_cli.json("index", photos)
    write_good_images(photos / "tmp", 1, seed=99)[0].replace(paths[0])
    os.utime(paths[0], (1, 1))
    report = empty_cli.json("index", photos)
    assert (report["added"], report["embedded"]) == (1, 1)
    stats = empty_cli.json("stats")
    assert (stats["images"], stats["missing"]) == (4, 1)


def test_symlink_loops_end_and_files_are_seen_once(empty_cli, tmp_path):
    photos = tmp_path / "photos"
    write_good_images(photos / "a", 3)
    (photos / "a" / "loop").symlink_to(photos)
    (photos / "alias").symlink_to(photos / "a")
    report = empty_cli.json("index", photos)
    assert report["files"] == 3  # the loop and the alias lead to folders already walked
    assert empty_cli.json("stats")["images"] == 3


def test_formats_and_exif_orientation(tmp_path, empty_cli):
    photos = tmp_path / "photos"
    write_good_images(photos, 6)  # png, jpg, webp, gif, bmp, tiff
    (photos / "rotated.jpg").write_bytes(jpeg_with_orientation(5, orientation=6, size=(80, 40)))
    report = empty_cli.json("index", photos)
    assert report["failed"] == 0 and report["added"] == 7
    from labeler.collection import Collection
    from labeler.config import Config

    collection = Collection(Config(home=empty_cli.home))
    with collection.session() as s:
        formats = set(s.scalars(select(Image.format)))
        rotated = s.scalar(select(Image).join(ImageFile).where(ImageFile.path == str(photos / "rotated.jpg")))
    assert formats == {"PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"}
    assert (rotated.width, rotated.height) == (40, 80)


def test_decode_reasons():
    with pytest.raises(BadImage, match="empty"):
        decode(b"", 10**8)
    with pytest.raises(BadImage, match="decompression bomb"):
        decode(png_with_header(50_000, 50_000), 10**8)
    with pytest.raises(BadImage, match="not an image"):
        decode(b"GIF89a? no", 10**8)
    decoded = decode(jpeg_with_orientation(1, orientation=6, size=(80, 40)), 10**8, draft_size=16)
    assert decoded.image.mode == "RGB" and decoded.image.size[1] > decoded.image.size[0]


def test_thumbnails_are_written_once_per_content(empty_cli, tmp_path):
    photos = tmp_path / "photos"
    paths = write_good_images(photos, 4)
    shutil.copy(paths[0], photos / "dup.png")
    empty_cli.json("index", photos)
    thumbs = list((empty_cli.home / "thumbnails").rglob("*.jpg"))
    assert len(thumbs) == 4


def test_an_older_homes_webp_thumbnail_is_kept_not_remade(empty_cli, empty_config, tmp_path):
    from labeler.ingest.walk import stored_thumbnail, thumbnail_path

    photos = tmp_path / "photos"
    paths = write_good_images(photos, 2)
    empty_cli.json("index", photos)
    sha = hashlib.sha256(paths[0].read_bytes()).hexdigest()
    jpeg, webp = thumbnail_path(empty_config, sha), thumbnail_path(empty_config, sha, ".webp")
    PILImage.open(jpeg).save(webp, "WEBP")  # as indexing wrote thumbnails before they were JPEG
    jpeg.unlink()
    os.utime(paths[0], (1, 1))  # changed mtime: loaded again, same content
    assert empty_cli.json("index", photos)["added"] == 1
    assert stored_thumbnail(empty_config, sha) == webp and not jpeg.exists()


def test_missing_folder_is_one_clear_error(empty_cli, tmp_path):
    result = empty_cli("index", tmp_path / "nope", expect=2)
    assert "does not exist" in result.stderr


def test_index_is_rebuilt_from_stored_vectors(empty_cli, tmp_path, empty_collection):
    photos = tmp_path / "photos"
    write_good_images(photos, 5)
    empty_cli.json("index", photos)
    index_file = next((empty_cli.home / "indexes").glob("*.faiss"))
    index_file.write_bytes(b"garbage")
    check = empty_cli.json("check", expect=1)
    assert not check["ok"] and "unreadable" in check["problems"][0]
    repaired = empty_cli.json("check", "--repair")
    assert repaired["ok"] and repaired["repaired"]
    ids, vecs = in_session(empty_collection.vectors.read)
    assert len(ids) == 5
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
