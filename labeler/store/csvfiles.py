"""CSV files that name catalog images (truth files, label imports): reading them, matching rows to images.

A row names its image by ``image_id``, ``path`` or ``file`` (relative to the CSV's folder), or, in
a Label Studio converter CSV, by its ``image`` URL; the other columns are the caller's (one per
group, say). A file that is not UTF-8 text, or has a field longer than ``MAX_FIELD``, is refused
with one line (a :class:`CsvError`), never a traceback.
"""

from __future__ import annotations

import codecs
import csv
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
SNIFF = 64 * 1024
MAX_LINE = 16 * 2 ** 20  # bytes in one line of a CSV read a row at a time; a longer one is not a label CSV


class CsvError(LabelerError):
    """A CSV file that cannot be read as one (not UTF-8, binary, malformed, a huge field)."""


def match_rows(session: Session, csv_path: Path, rows: list[dict[str, str]]) -> list[int | None]:
    """Catalog image id of each CSV row (``image_id``, ``path`` or ``file``), None when none matches,
    read in the caller's ``session`` (see :class:`RowMatcher`)."""
    return RowMatcher(session, csv_path).match(rows)


class RowMatcher:
    """Matches CSV rows to catalog images a batch at a time, so a file of any length is matched
    in bounded memory.

    ``image_id`` and exact paths are looked up per batch in the catalog. A ``file`` is relative to
    the CSV's folder; when that path is unknown, a bare file name that is unique in the catalog
    still matches. A ``path`` must match exactly. Only the bare-name fallback and Label Studio's
    image URLs need the catalog's file names; those are read once, the first time a row needs them.
    """

    def __init__(self, session: Session, csv_path: Path):
        self.session = session
        self.base = csv_path.resolve().parent
        self._by_name: dict[str, list[tuple[str, int]]] | None = None

    def match(self, rows: list[dict[str, str]]) -> list[int | None]:
        """The image id of each row of one batch, None when none matches."""
        wanted_ids: set[int] = set()
        wanted_paths: set[str] = set()
        plans: list[tuple[str, object]] = []
        for row in rows:
            if (row.get("image_id") or "").strip().isdigit():
                candidate = int(row["image_id"])
                wanted_ids.add(candidate)
                plans.append(("id", candidate))
                continue
            exact = bool((row.get("path") or "").strip())
            ref = (row.get("path") or row.get("file") or "").strip()
            url = (row.get(IMAGE_URL_COLUMN) or "").strip()
            if not ref and url:
                plans.append(("url", url))
                wanted_paths.add(_url_path(url))
            elif ref:
                full = Path(ref).expanduser()
                full = full if full.is_absolute() else self.base / full
                try:
                    options = (os.path.abspath(full), str(full.resolve()))
                except (OSError, RuntimeError):  # a symlink loop, a name too long: no such catalog path
                    options = (os.path.abspath(full),)
                wanted_paths.update(options)
                fallback = ref if not exact and os.path.basename(ref) == ref else None
                plans.append(("path", (options, fallback)))
            else:
                plans.append(("none", None))
        known_ids = self._known_ids(wanted_ids)
        by_path = self._by_paths(wanted_paths)
        matched: list[int | None] = []
        for kind, what in plans:
            image_id = None
            if kind == "id":
                image_id = what if what in known_ids else None
            elif kind == "url":
                image_id = self._match_url(what, by_path)
            elif kind == "path":
                options, fallback = what
                image_id = next((by_path[o] for o in options if o in by_path), None)
                if image_id is None and fallback is not None:
                    image_id = self._unique_name(fallback)
            matched.append(image_id)
        return matched

    def _known_ids(self, ids: set[int]) -> set[int]:
        found: set[int] = set()
        batch = sorted(i for i in ids if i < 2 ** 63)
        for start in range(0, len(batch), 500):
            found.update(self.session.scalars(select(ImageFile.image_id).where(
                ImageFile.image_id.in_(batch[start:start + 500])).distinct()))
        return found

    def _by_paths(self, paths: set[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        batch = sorted(p for p in paths if p)
        for start in range(0, len(batch), 500):
            for path, image_id in self.session.execute(select(ImageFile.path, ImageFile.image_id).where(
                    ImageFile.path.in_(batch[start:start + 500]), ImageFile.image_id.is_not(None))):
                found[path] = image_id
        return found

    def _names(self) -> dict[str, list[tuple[str, int]]]:
        if self._by_name is None:
            self._by_name = {}
            for path, image_id in self.session.execute(select(ImageFile.path, ImageFile.image_id)
                                                       .where(ImageFile.image_id.is_not(None))):
                self._by_name.setdefault(os.path.basename(path), []).append((path, image_id))
        return self._by_name

    def _unique_name(self, name: str) -> int | None:
        ids = {image_id for _, image_id in self._names().get(name, ())}
        return ids.pop() if len(ids) == 1 else None

    def _match_url(self, url: str, by_path: dict[str, int]) -> int | None:
        """The image an ``image`` URL names: Label Studio's ``/data/local-files/?d=REL`` (or any URL's
        path) matches the one catalog path that ends with it, or an absolute path exactly."""
        rel = _url_path(url)
        if not rel:
            return None
        if rel in by_path:
            return by_path[rel]
        tail = "/" + rel.lstrip("/")
        found = {image_id for path, image_id in self._names().get(os.path.basename(tail), ())
                 if path.endswith(tail)}
        return found.pop() if len(found) == 1 else None


def _url_path(url: str) -> str:
    """The file path in a Label Studio image URL (``?d=REL``, else the URL's path)."""
    parts = urlsplit(url)
    return unquote(parts.query[2:]) if parts.query.startswith("d=") else unquote(parts.path)


def read_csv(csv_path: Path, id_columns: tuple[str, ...] = ID_COLUMNS) -> list[dict[str, str]]:
    """The rows of a UTF-8 CSV (a BOM is fine) that has one of ``id_columns``; :class:`CsvError` otherwise."""
    return [row for _, row in CsvRows(csv_path, id_columns)]


class CsvRows:
    """The rows of a UTF-8 CSV read one at a time, as ``(line, row)``: memory stays bounded by a
    row, whatever the file's length. ``columns`` is the header (read on creation) and
    ``bytes_read`` how far into the file the rows read so far reach, for progress.

    Raises :class:`CsvError` (at creation for the header, while iterating for a row) for a file
    that is not UTF-8 text, holds NUL bytes, is malformed, or has a field longer than ``MAX_FIELD``
    or a line longer than ``MAX_LINE`` bytes; the message names the line.
    """

    def __init__(self, csv_path: Path, id_columns: tuple[str, ...] = ID_COLUMNS):
        if not csv_path.exists():
            raise LabelerError(f"{csv_path}: no such file")
        if not csv_path.is_file():
            raise CsvError(f"{csv_path}: not a regular file")
        self.path = csv_path
        self.size = csv_path.stat().st_size
        self.bytes_read = 0
        self._fh = csv_path.open("rb")
        head = self._fh.read(SNIFF)  # the first block says "binary" or "UTF-16" before any line is read
        self._fh.seek(0)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            self._fh.close()
            raise CsvError(f"{csv_path}: not a readable UTF-8 CSV file: it is UTF-16; save it as UTF-8")
        if b"\x00" in head:
            self._fh.close()
            raise CsvError(f"{csv_path}: not a readable UTF-8 CSV file: it holds NUL bytes (binary data or UTF-16)")
        self._physical_line = 0
        self._record: list[str] = []  # the lines of the record being read
        self._reader = csv.reader(self._lines())
        try:
            header = next(self._reader, None)
        except BaseException:
            self._fh.close()
            raise
        self.columns = list(header or [])
        if not self.columns or not any(c in self.columns for c in id_columns):
            self._fh.close()
            also = " (or Label Studio's image URL)" if IMAGE_URL_COLUMN in id_columns else ""
            raise CsvError(f"{csv_path}: needs a column named file, path or image_id{also}")

    def _lines(self):
        """The file's lines as text, checked as they are read (UTF-8, no NUL, bounded length)."""
        offset = 0
        decode = codecs.getincrementaldecoder("utf-8-sig")("strict")
        while True:
            raw = self._fh.readline(MAX_LINE + 1)
            if not raw:
                try:
                    decode.decode(b"", final=True)
                except UnicodeDecodeError:
                    raise CsvError(f"{self.path}: not a readable UTF-8 CSV file: it ends inside a character "
                                   f"(cut off at offset {offset}?)") from None
                return
            self._physical_line += 1
            if len(raw) > MAX_LINE:
                raise CsvError(f"{self.path}: line {self._physical_line} is longer than {MAX_LINE // 2 ** 20} MiB; "
                               "not a label CSV")
            if b"\x00" in raw:
                raise CsvError(f"{self.path}: not a readable UTF-8 CSV file: it holds NUL bytes (line "
                               f"{self._physical_line}: binary data or UTF-16)")
            try:
                text = decode.decode(raw)
            except UnicodeDecodeError as exc:
                raise CsvError(f"{self.path}: not a readable UTF-8 CSV file: byte {raw[exc.start]:#04x} at offset "
                               f"{offset + exc.start} (line {self._physical_line}; save it as UTF-8)") from None
            offset += len(raw)
            self.bytes_read = offset
            self._record.append(text)
            yield text

    def __iter__(self):
        try:
            for row in self._rows():
                yield row
        finally:
            self._fh.close()

    def _rows(self):
        n = len(self.columns)
        while True:
            self._record.clear()
            start = self._reader.line_num + 1  # a quoted field may span lines: a row is where it starts
            try:
                values = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                line = self._reader.line_num
                if "field larger than field limit" in str(exc):
                    raise CsvError(f"{self.path}: line {line}: a field is longer than {MAX_FIELD} characters; "
                                   "not a label CSV") from None
                raise CsvError(f"{self.path}: line {line}: not a readable CSV file: {exc}") from None
            if self._record and not self._record[-1].endswith(("\n", "\r")) and "".join(self._record).count('"') % 2:
                # the last record, with no line end and a quote left open: the file was cut off
                raise CsvError(f"{self.path}: line {start}: the file ends inside a quoted field "
                               "(cut off?)")
            if not values:
                continue  # a blank line, as DictReader skips it
            row = dict(zip(self.columns, values))
            if len(values) > n:
                row[None] = values[n:]  # as DictReader keeps extra fields
            elif len(values) < n:
                row.update((c, None) for c in self.columns[len(values):])
            yield start, row
