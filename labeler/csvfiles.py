"""CSV files that name catalog images (truth files, label imports): reading them, matching rows to images.

A row names its image by ``image_id``, ``path`` or ``file`` (relative to the CSV's folder); the
other columns are the caller's (one per group, say).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from sqlalchemy import select

from .catalog import ImageFile
from .collection import Collection
from .errors import LabelerError

ID_COLUMNS = ("file", "path", "image_id")


def match_rows(collection: Collection, csv_path: Path, rows: list[dict[str, str]]) -> list[int | None]:
    """Catalog image id of each CSV row (``image_id``, ``path`` or ``file``), None when none matches.

    A ``file`` is relative to the CSV's folder; when that path is unknown, a bare file name that is
    unique in the catalog still matches. A ``path`` must match exactly.
    """
    base = csv_path.resolve().parent
    by_path: dict[str, int] = {}
    by_name: dict[str, int | None] = {}
    with collection.session() as s:
        for path, image_id in s.execute(select(ImageFile.path, ImageFile.image_id)
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
            if ref:
                full = Path(ref).expanduser()
                full = full if full.is_absolute() else base / full
                image_id = by_path.get(os.path.abspath(full)) or by_path.get(str(full.resolve()))
                if image_id is None and not exact and os.path.basename(ref) == ref:
                    image_id = by_name.get(ref)
        matched.append(image_id)
    return matched


def read_csv(csv_path: Path) -> list[dict[str, str]]:
    if not csv_path.is_file():
        raise LabelerError(f"{csv_path}: no such file")
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not any(c in reader.fieldnames for c in ID_COLUMNS):
            raise LabelerError(f"{csv_path}: needs a column named file, path or image_id")
        return list(reader)
