"""Image bytes by catalog id only: no path ever comes from a request, so none can traverse.

An original is sent only while it is still the file the catalog knows: its real path inside
a root of the collection (a symlink re-pointed elsewhere is not) and its size and mtime as
indexed. Otherwise the answer is 404 and the file is marked ``changed``, so the next
``index`` reads it again.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from flask import Blueprint, abort, send_file
from sqlalchemy import update

from ..store.catalog import Image, ImageFile
from ..encoding.images import BROWSER_FORMATS, BadImage
from ..ingest.walk import Containment, make_rendition, recorded_roots, stored_thumbnail
from .context import collection

bp = Blueprint("images", __name__, url_prefix="/images")

MIMETYPES = {"jpeg": "image/jpeg", "jpg": "image/jpeg", "png": "image/png", "webp": "image/webp",
             "gif": "image/gif", "bmp": "image/bmp", "tiff": "image/tiff", "avif": "image/avif",
             "ico": "image/vnd.microsoft.icon", "heif": "image/heif"}


def _image(image_id: int) -> Image:
    with collection().session() as s:
        image = s.get(Image, image_id)
        if image is None:
            abort(404, f"no image with id {image_id}")
        _ = image.files  # load while the session is open
        return image


def _open_as_indexed(file: ImageFile, containment: Containment | None) -> BinaryIO | None:
    """``file`` opened for reading when it is still what the catalog indexed, else None.

    The checks are made on the opened descriptor, so the name cannot be swapped between check
    and send. ``containment`` is None for a catalog indexed before roots were recorded.
    Raises ``FileNotFoundError`` when the file is gone.
    """
    fd = os.open(file.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block
    try:
        st = os.fstat(fd)
        try:  # what was opened, not what the name points to now (Linux)
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            real = os.path.realpath(file.path)
        if stat.S_ISREG(st.st_mode) and st.st_size == file.size and st.st_mtime == file.mtime and \
                (containment is None or containment.contains(real)):
            return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def _send_original(image: Image, rendition: bool = False):
    """The image's file as it is on disk; with ``rendition``, a JPEG made from it (cached) when a
    browser cannot show its format."""
    with collection().session() as s:
        roots = recorded_roots(s)
    containment = Containment(roots) if roots else None
    changed = []
    for file in (f for f in image.files if f.status == "ok"):
        try:
            opened = _open_as_indexed(file, containment)
        except OSError:
            continue  # gone or unreadable: the next index marks it missing
        if opened is None:
            changed.append(file.id)
            continue
        if rendition:
            with opened:
                return _send_rendition(image, opened)
        mimetype = MIMETYPES.get((image.format or "").lower(), "application/octet-stream")
        response = send_file(opened, mimetype=mimetype, max_age=3600, etag=image.sha256,
                             last_modified=file.mtime)
        response.content_length = file.size
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
    if changed:
        with collection().session() as s:
            s.execute(update(ImageFile).where(ImageFile.id.in_(changed), ImageFile.status == "ok").values(
                status="changed", error="changed on disk, or no longer inside the collection, since it was indexed"))
        abort(404, f"the file of image {image.id} changed on disk since it was indexed; run index again")
    abort(404, f"the file of image {image.id} is missing on disk")


@bp.route("/<int:image_id>/full")
def full(image_id: int):
    """The original file, whatever its format (the API's ``full_url``)."""
    return _send_original(_image(image_id))


def _send_rendition(image: Image, opened: BinaryIO):
    try:
        path = make_rendition(collection().config, image.sha256, opened)
    except BadImage as exc:
        abort(404, f"image {image.id} no longer decodes: {exc}")
    response = send_file(path, mimetype="image/jpeg", max_age=3600, etag=f"{image.sha256}-view")
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.route("/<int:image_id>/view")
def view(image_id: int):
    """What the detail page and focus mode show: the original when browsers display its format,
    else a JPEG rendition (TIFF, HEIC), made on first view and cached like thumbnails."""
    image = _image(image_id)
    return _send_original(image, rendition=(image.format or "").upper() not in BROWSER_FORMATS)


@bp.route("/<int:image_id>/thumb")
def thumb(image_id: int):
    image = _image(image_id)
    path = stored_thumbnail(collection().config, image.sha256)
    if path is None:
        return _send_original(image)  # thumbnails not made yet: the original still shows
    # JPEG since thumbnails are made from the draft decode; WebP in homes indexed before that
    response = send_file(path, mimetype=MIMETYPES[path.suffix.lstrip(".")], max_age=3600)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
