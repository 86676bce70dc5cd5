"""Formats a browser cannot show (TIFF, HEIC) get a JPEG rendition on the detail page and in focus
mode, made on first view and cached like thumbnails; the others are sent as they are."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import Image as PILImage
from sqlalchemy import select

from labeler.collection import Collection
from labeler.ingest import run
from labeler.ingest.walk import rendition_path
from labeler.store import db
from labeler.store.catalog import ImageFile
from tests.imagegen import float_rgb_tiff, picture
from tests.web.conftest import Users, login


def colours(img: PILImage.Image) -> np.ndarray:
    """The picture at 30 x 20 (box means): what it shows, apart from JPEG's pixel noise."""
    return np.asarray(img.convert("RGB").resize((30, 20), PILImage.Resampling.BOX), dtype=float)


def write_originals(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    made = {"tiff": folder / "scan.tif", "float tiff": folder / "hdr.tiff", "heic": folder / "IMG_0001.HEIC",
            "jpeg": folder / "photo.jpg", "png": folder / "shot.png"}
    picture(1, (300, 200)).save(made["tiff"], "TIFF", compression="tiff_lzw")
    made["float tiff"].write_bytes(float_rgb_tiff(np.asarray(picture(2, (300, 200)), np.float32) / 255))
    pillow_heif.from_pillow(picture(3, (300, 200))).save(made["heic"], format="HEIF", quality=90)
    picture(4, (300, 200)).save(made["jpeg"], "JPEG")
    picture(5, (300, 200)).save(made["png"], "PNG")
    return made


def image_ids(config, paths: dict[str, Path]) -> dict[str, tuple[int, str]]:
    with db.session_scope(config) as s:
        rows = {f.path: f.image for f in s.scalars(select(ImageFile))}
        return {kind: (rows[str(p)].id, rows[str(p)].sha256) for kind, p in paths.items()}


def test_tiff_and_heic_are_shown_as_jpeg_renditions(web_config, tmp_path):
    made = write_originals(tmp_path / "originals")
    report = run.index_paths(Collection(web_config), [tmp_path / "originals"])
    assert report.failed == 0, report.failures
    ids = image_ids(web_config, made)

    from labeler.web import create_app

    client = create_app(web_config, {"TESTING": True}).test_client()
    login(client, Users.reviewer)
    for kind in ("tiff", "float tiff", "heic"):
        image_id, sha = ids[kind]
        assert not rendition_path(web_config, sha).exists()
        view = client.get(f"/images/{image_id}/view")
        assert view.status_code == 200 and view.mimetype == "image/jpeg", kind
        shown = PILImage.open(io.BytesIO(view.data))
        assert (shown.format, shown.size) == ("JPEG", (300, 200)), kind
        seed = {"tiff": 1, "float tiff": 2, "heic": 3}[kind]
        assert np.abs(colours(shown) - colours(picture(seed, (300, 200)))).mean() < 3, kind  # the same picture
        assert rendition_path(web_config, sha).is_file()  # cached: the next view reads no original
        again = client.get(f"/images/{image_id}/view")
        assert again.status_code == 200 and again.data == view.data
        # the API's full_url still sends the original file as it is
        assert client.get(f"/images/{image_id}/full").data == made[kind].read_bytes()
    for kind in ("jpeg", "png"):  # browsers show these: the original, no rendition made
        image_id, sha = ids[kind]
        view = client.get(f"/images/{image_id}/view")
        assert view.status_code == 200 and view.data == made[kind].read_bytes(), kind
        assert not rendition_path(web_config, sha).exists()

    # the detail page and focus mode point at the view, not at the original
    tiff_id = ids["tiff"][0]
    page = client.get(f"/images/{tiff_id}").get_data(as_text=True)
    assert f'src="/images/{tiff_id}/view"' in page
    queue = client.get("/review?group=concept").get_data(as_text=True)
    assert '"full":"/images/0/view"' in queue  # focus mode


def test_a_rendition_of_a_changed_file_is_a_404(web_config, tmp_path):
    made = write_originals(tmp_path / "originals")
    run.index_paths(Collection(web_config), [tmp_path / "originals"])
    ids = image_ids(web_config, made)
    made["tiff"].write_bytes(b"no longer a TIFF")

    from labeler.web import create_app

    client = create_app(web_config, {"TESTING": True}).test_client()
    login(client, Users.reviewer)
    response = client.get(f"/images/{ids['tiff'][0]}/view")
    assert response.status_code == 404 and "changed on disk" in response.get_data(as_text=True)
