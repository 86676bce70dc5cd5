"""Image bytes by catalog id only: no path ever comes from a request, so none can traverse."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, send_file

from ..catalog import Image
from ..ingest import thumbnail_path

bp = Blueprint("images", __name__, url_prefix="/images")

MIMETYPES = {"jpeg": "image/jpeg", "jpg": "image/jpeg", "png": "image/png", "webp": "image/webp",
             "gif": "image/gif", "bmp": "image/bmp", "tiff": "image/tiff"}


def _image(image_id: int) -> Image:
    from . import collection

    with collection().session() as s:
        image = s.get(Image, image_id)
        if image is None:
            abort(404, f"no image with id {image_id}")
        _ = image.files  # load while the session is open
        return image


def _send_original(image: Image):
    present = [f.path for f in image.files if f.status == "ok" and Path(f.path).is_file()]
    if not present:
        abort(404, f"the file of image {image.id} is missing on disk")
    mimetype = MIMETYPES.get((image.format or "").lower(), "application/octet-stream")
    response = send_file(present[0], mimetype=mimetype, max_age=3600)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.route("/<int:image_id>/full")
def full(image_id: int):
    return _send_original(_image(image_id))


@bp.route("/<int:image_id>/thumb")
def thumb(image_id: int):
    from . import collection

    image = _image(image_id)
    path = thumbnail_path(collection().config, image.sha256)
    if not path.is_file():
        return _send_original(image)  # thumbnails not made yet: the original still shows
    response = send_file(path, mimetype="image/webp", max_age=3600)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
