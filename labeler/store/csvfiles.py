"""CSV files that name catalog images (truth files, label imports): reading them, matching rows to images.

A row names its image by ``image_id``, ``path`` or ``file`` (relative to the CSV's folder), or, in
a Label Studio converter CSV, by its ``image`` URL; the other columns are the caller's (one per
group, say). A file that is not UTF-8 text, or has a field longer than ``MAX_FIELD``, is refused
with one line (a :class:`CsvError`), never a traceback.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from .catalog import ImageFile
from ..errors import LabelerError

ID_COLUMNS = ("file", "path", "image_id")
IMAGE_URL_COLUMN = "image"  # Label Studio's data.image, as its converter writes it
MAX_FIELD = csv.field_size_limit()  # the csv module's own limit (128 KiB); no label comes near it


class CsvError(LabelerError):
    """A CSV file that cannot be read as one (not UTF-8, binary, malformed, a huge field)."""


def match_rows(session: Session, csv_path: Path, rows: list[dict[str, str]]) -> list[int | None]:
    """Catalog image id of each CSV row (``image_id``, ``path`` or ``file``), None when none matches,
    read in the caller's ``session``.

    A ``file`` is relative to the CSV's folder; when that path is unknown, a bare file name that is
    unique in the catalog still matches. A ``path`` must match exactly.
    """
    base = csv_path.resolve().parent
    by_path: dict[str, int] = {}
    by_name: dict[str, int | None] = {}
    for path, image_id in session.execute(select(ImageFile.path, ImageFile.image_id)
                                          .where(ImageFile.image_id.is_not(None))):
        by_path[path] = image_id
        name = os.path.basename(path)
        by_name[name] = image_id if name not in by_name or by_name[name] == image_id else None
    known_ids = None
    matched: list[int | None] = []
    for row in rows:
        image_id = None
        if (row.get("image_id") or "").strip().isdigit():
            if known_ids is None:
                known_ids = set(by_path.values())
            candidate = int(row["image_id"])
            image_id = candidate if candidate in known_ids else None
        else:
            exact = bool((row.get("path") or "").strip())
            ref = (row.get("path") or row.get("file") or "").strip()
            url = (row.get(IMAGE_URL_COLUMN) or "").strip()
            if not ref and url:
                image_id = _match_url(url, by_path)
            elif ref:
                full = Path(ref).expanduser()
                full = full if full.is_absolute() else base / full
                image_id = by_path.get(os.path.abspath(full)) or by_path.get(str(full.resolve()))
                if image_id is None and not exact and os.path.basename(ref) == ref:
                    image_id = by_name.get(ref)
        matched.append(image_id)
    return matched


def _match_url(url: str, by_path: dict[str, int]) -> int | None:
    """The image an ``image`` URL names: Label Studio's ``/data/local-files/?d=REL`` (or any URL's
    path) matches the one catalog path that ends with it, or an absolute path exactly."""
    parts = urlsplit(url)
    rel = unquote(parts.query[2:]) if parts.query.startswith("d=") else unquote(parts.path)
    if not rel:
        return None
    if rel in by_path:
        return by_path[rel]
    tail = "/" + rel.lstrip("/")
    found = {image_id for path, image_id in by_path.items() if path.endswith(tail)}
    return found.pop() if len(found) == 1 else None


def read_csv(csv_path: Path, id_columns: tuple[str, ...] = ID_COLUMNS) -> list[dict[str, str]]:
    """The rows of a UTF-8 CSV (a BOM is fine) that has one of ``id_columns``; :class:`CsvError` otherwise."""
    if not csv_path.exists():
        raise LabelerError(f"{csv_path}: no such file")
    if not csv_path.is_file():
        raise CsvError(f"{csv_path}: not a regular file")
    raw = csv_path.read_bytes()
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise CsvError(f"{csv_path}: not a readable UTF-8 CSV file: it is UTF-16; save it as UTF-8")
    if b"\x00" in raw:
        raise CsvError(f"{csv_path}: not a readable UTF-8 CSV file: it holds NUL bytes (binary data or UTF-16)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CsvError(f"{csv_path}: not a readable UTF-8 CSV file: byte {raw[exc.start]:#04x} at offset "
                       f"{exc.start} (save it as UTF-8)") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        if not reader.fieldnames or not any(c in reader.fieldnames for c in id_columns):
            also = " (or Label Studio's image URL)" if IMAGE_URL_COLUMN in id_columns else ""
            raise CsvError(f"{csv_path}: needs a column named file, path or image_id{also}")
        return list(reader)
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            raise CsvError(f"{csv_path}: line {reader.line_num}: a field is longer than {MAX_FIELD} characters; "
                           "not a label CSV") from None
        raise CsvError(f"{csv_path}: line {reader.line_num}: not a readable CSV file: {exc}") from None
