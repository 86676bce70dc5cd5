"""Ingest: walk folders, recognise files by size/mtime and content hash, decode, thumbnail.

Stages, as in clip-retrieval: :func:`walk` reads the file system, :func:`load_file` maps one
path to a :class:`LoadedFile` (hash, decode, thumbnail, model input; safe to run in worker
threads), and :class:`CatalogWriter` writes the results. The runner in ``pipeline.py`` joins them.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..store.catalog import Image, ImageFile, Setting
from ..config import Config
from ..errors import LabelerError
from ..files import write_atomically
from ..encoding.images import (RENDITION_SIDE, BadImage, decode, is_image_path, left_out_reason, model_view,
                               rendition_bytes, thumbnail_bytes)


# Kernel views, not folders of images: /proc/self/root alone leads back to the whole filesystem.
SPECIAL_FILESYSTEMS = ("/proc", "/sys", "/dev")
ROOTS_KEY = "indexed_roots"  # settings key: JSON list of the real paths of every root ever indexed
LEAVES = "symlink leaves the collection"
NOT_UTF8 = "file name is not valid UTF-8: the catalog stores names as text; rename it to index it"


def printable_path(path: str | os.PathLike) -> str:
    """``path`` as text that any output takes: bytes that are not UTF-8 shown as ``\\xff``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def utf8_name(path: str | os.PathLike) -> bool:
    """Whether ``path`` is valid UTF-8, so the catalog (and every export) can store it as text."""
    try:
        os.fsencode(path).decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _inside(real: str, roots: Iterable[str]) -> bool:
    """Whether the real path ``real`` is one of ``roots`` or lies under one (all real paths)."""
    return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def special_filesystem(real: str) -> str | None:
    """The special filesystem (``/proc``, ``/sys``, ``/dev``) that the real path ``real`` lies in, if any."""
    return next((fs for fs in SPECIAL_FILESYSTEMS if _inside(real, [fs])), None)


def check_root(root: Path) -> str:
    """The real path of a root the user asked to index; a missing root or a special
    filesystem is a :class:`LabelerError`."""
    if not os.path.exists(root):
        raise LabelerError(f"no such file or folder: {root}")
    real = os.path.realpath(root)
    if (fs := special_filesystem(real)) is not None:
        raise LabelerError(f"refusing to index {root}: it is {real}, inside the special filesystem {fs}, "
                           "not a folder of images")
    return real


class Containment:
    """The real paths of a collection's roots: a file belongs to the collection only when its
    real path (every symlink resolved) lies inside one of them."""

    def __init__(self, roots: Iterable[Path | str]):
        self.roots = sorted({os.path.realpath(r) for r in roots})

    def contains(self, path: Path | str) -> bool:
        return _inside(os.path.realpath(path), self.roots)


def recorded_roots(session: Session) -> list[str]:
    """The real paths of every root indexed into this catalog (empty for a catalog that predates them)."""
    row = session.get(Setting, ROOTS_KEY)
    return json.loads(row.value) if row else []


def record_roots(session: Session, roots: Iterable[Path | str]) -> None:
    """Add the real paths of ``roots`` to the catalog's indexed roots."""
    row = session.get(Setting, ROOTS_KEY)
    known = set(json.loads(row.value)) if row else set()
    value = json.dumps(sorted(known | {os.path.realpath(r) for r in roots}))
    if row is None:
        session.add(Setting(key=ROOTS_KEY, value=value))
    else:
        row.value = value


def walk(roots: Iterable[Path], skipped: list[dict] | None = None) -> Iterator[Path]:
    """Every image-named file under ``roots`` (files or folders), absolute, each once.

    A symlink (to a file or a folder) is followed only when its target stays inside one of
    ``roots``; a folder is never entered twice, so symlink loops end. What is left out and why
    is appended to ``skipped`` as ``{"path", "reason"}``.
    """
    roots = [Path(os.path.abspath(r)) for r in roots]
    walker = _Walker([check_root(r) for r in roots], [] if skipped is None else skipped)
    for root, real_root in zip(roots, walker.real_roots):
        if not utf8_name(root):
            walker.skip(str(root), NOT_UTF8)
        elif os.path.isdir(root):
            yield from walker.folder(root, real_root)
        elif str(root) not in walker.seen_files:
            walker.seen_files.add(str(root))
            yield root


class _Walker:
    """One walk's state: the real roots, the folders entered and the files given, what was skipped."""

    def __init__(self, real_roots: list[str], skipped: list[dict]):
        self.real_roots = real_roots
        self.skipped = skipped
        self.seen_dirs: set[tuple[int, int]] = set()
        self.seen_files: set[str] = set()

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append({"path": printable_path(path), "reason": reason})

    def folder(self, root: Path, real_root: str) -> Iterator[Path]:
        """The images under the folder ``root``: depth first, in name order, no recursion limit."""
        stack = [(str(root), real_root)]  # (folder, its real path)
        while stack:
            folder, real = stack.pop()
            folders = []
            for entry in self.entries(folder):
                if not self.utf8_entry(entry):
                    continue
                # A symlink's own target decides; anything else lies where its folder does.
                target = os.path.realpath(entry.path) if entry.is_symlink() else os.path.join(real, entry.name)
                if _is_dir(entry):
                    if self.enterable(entry.path, target):
                        folders.append((entry.path, target))
                elif is_image_path(Path(entry.name)):
                    if self.new_image(entry.path, target):
                        yield Path(entry.path)
                elif (reason := left_out_reason(Path(entry.name))) is not None:
                    self.skip(entry.path, reason)  # an image this walk cannot read is never left out silently
            stack.extend(reversed(folders))

    def entries(self, folder: str) -> list[os.DirEntry]:
        """The folder's entries by name; none for a folder entered before or unreadable (skipped)."""
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in self.seen_dirs:
                return []
            self.seen_dirs.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                return sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self.skip(folder, f"unreadable folder: {exc.strerror or exc}")
            return []

    def utf8_entry(self, entry: os.DirEntry) -> bool:
        """Whether the entry's name is UTF-8; a folder or image whose name is not is skipped."""
        if utf8_name(entry.name):
            return True
        if _is_dir(entry) or is_image_path(Path(entry.name)):
            self.skip(entry.path, NOT_UTF8)
        return False

    def enterable(self, path: str, target: str) -> bool:
        """Whether to walk into the folder ``path`` (real path ``target``); if not, say why."""
        if not _inside(target, self.real_roots):
            self.skip(path, LEAVES)
        elif (fs := special_filesystem(target)) is not None:
            self.skip(path, f"special filesystem {fs}")
        else:
            return True
        return False

    def new_image(self, path: str, target: str) -> bool:
        """Whether the image file ``path`` is inside the roots and not given yet."""
        if not _inside(target, self.real_roots):
            self.skip(path, LEAVES)
            return False
        if path in self.seen_files:
            return False
        self.seen_files.add(path)
        return True


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


@dataclass
class LoadedFile:
    """What one worker learned about one file."""

    path: Path
    size: int
    mtime: float
    sha256: str | None = None
    width: int = 0
    height: int = 0
    format: str = ""
    error: str | None = None
    thumbnail: bytes | None = None
    pixels: object | None = None  # the model's input tensor, when embedding


def file_stat(path: Path) -> tuple[int, float]:
    st = path.stat()
    return st.st_size, st.st_mtime


HASH_CHUNK = 1 << 20  # files are hashed a megabyte at a time, never held whole


def load_file(path: Path, config: Config, preprocess: Callable | None = None,
              draft_size: int | None = None) -> LoadedFile:
    """Read, hash and decode one file. Never raises for bad content: the reason goes in ``error``.

    A file over ``config.max_file_mb`` is refused from its size alone, before a byte is read; the
    rest is hashed in chunks and decoded from the open file, so memory never holds the whole file.
    """
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
            return LoadedFile(path, 0, st.st_mtime, error="not a regular file")
        if st.st_size > config.max_file_bytes:
            return LoadedFile(path, st.st_size, st.st_mtime, error=too_large(st.st_size, config))
        with open(path, "rb") as f:
            return _load_open_file(path, f, st.st_mtime, config, preprocess, draft_size)
    except OSError as exc:
        return LoadedFile(path, 0, 0.0, error=f"unreadable: {exc.strerror or exc}")


TOO_LARGE = "larger than LABELER_MAX_FILE_MB"


def too_large(size: int, config: Config) -> str:
    """The reason recorded for a file over the size limit."""
    return (f"{TOO_LARGE} ({config.max_file_mb} MB): "
            f"{size / (1 << 20):,.0f} MB; raise the limit to index it")


def _load_open_file(path: Path, f, mtime: float, config: Config, preprocess: Callable | None,
                    draft_size: int | None) -> LoadedFile:
    digest, size = hashlib.sha256(), 0
    while chunk := f.read(HASH_CHUNK):
        size += len(chunk)
        if size > config.max_file_bytes:  # grew since the stat
            return LoadedFile(path, size, mtime, error=too_large(size, config))
        digest.update(chunk)
    result = LoadedFile(path, size, mtime, sha256=digest.hexdigest())
    try:
        decoded = decode(f, config.max_pixels, draft_size=draft_size)
        result.width, result.height, result.format = decoded.width, decoded.height, decoded.format
        if stored_thumbnail(config, result.sha256) is None:
            result.thumbnail = thumbnail_bytes(decoded.image, config.thumbnail_size)
        if preprocess is not None:
            result.pixels = preprocess(model_view(decoded.image))
    except BadImage as exc:
        result.error = str(exc)
    except Exception as exc:  # a decoder bug on hostile input must not stop the run
        result.error = f"cannot decode: {type(exc).__name__}: {exc}"
    return result


THUMBNAIL_SUFFIX = ".jpg"
LEGACY_THUMBNAIL_SUFFIX = ".webp"  # what homes made before JPEG thumbnails hold; still served, never remade


def thumbnail_path(config: Config, sha256: str, suffix: str = THUMBNAIL_SUFFIX) -> Path:
    """Where the thumbnail of content ``sha256`` is written."""
    return config.thumbnail_dir / sha256[:2] / f"{sha256}{suffix}"


def stored_thumbnail(config: Config, sha256: str) -> Path | None:
    """The thumbnail already made for content ``sha256`` (JPEG, or an older home's WebP), if any."""
    for suffix in (THUMBNAIL_SUFFIX, LEGACY_THUMBNAIL_SUFFIX):
        path = thumbnail_path(config, sha256, suffix)
        if path.is_file():
            return path
    return None


RENDITION_SUFFIX = ".jpg"


def rendition_path(config: Config, sha256: str) -> Path:
    """Where the browser rendition of content ``sha256`` (a TIFF's, a HEIC's) is cached."""
    return config.rendition_dir / sha256[:2] / f"{sha256}{RENDITION_SUFFIX}"


def make_rendition(config: Config, sha256: str, f) -> Path:
    """The cached browser rendition of content ``sha256``, made from the open file ``f`` when there
    is none yet; :class:`BadImage` when the file no longer decodes. A cache, like thumbnails."""
    path = rendition_path(config, sha256)
    if not path.is_file():
        decoded = decode(f, config.max_pixels, draft_size=RENDITION_SIDE)
        write_atomically(path, rendition_bytes(decoded.image), durable=False)
    return path


def write_thumbnail(config: Config, sha256: str, data: bytes) -> None:
    path = thumbnail_path(config, sha256)
    if stored_thumbnail(config, sha256) is None:
        write_atomically(path, data, durable=False)  # a cache: rebuilt from the image if lost


@dataclass
class IngestCounts:
    added: int = 0  # new or changed files registered
    unchanged: int = 0
    failed: int = 0
    duplicates: int = 0  # new paths whose content was already known
    moved: int = 0  # files gone whose content is still present at another path
    missing: int = 0  # files gone since the last run
    failures: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"}: not part of the collection
    revived: list[int] = field(default_factory=list)  # images present again after being missing


class CatalogWriter:
    """Writes loaded files into the catalog: images by content hash, files by path."""

    def __init__(self, session: Session, config: Config, counts: IngestCounts):
        self.session = session
        self.config = config
        self.counts = counts

    def record(self, loaded: LoadedFile) -> Image | None:
        """Register ``loaded``; returns its image (None for a failed file)."""
        path = str(loaded.path)
        row = self.session.scalar(select(ImageFile).where(ImageFile.path == path))
        if row is None:
            row = ImageFile(path=path, size=loaded.size, mtime=loaded.mtime)
            self.session.add(row)
        row.size, row.mtime = loaded.size, loaded.mtime
        previous = row.image_id
        if loaded.error is not None:
            row.status, row.error, row.image_id = "failed", loaded.error, None
            self.counts.failed += 1
            self.counts.failures.append({"path": path, "reason": loaded.error})
            self._orphaned(previous, None)
            return None
        image = self.session.scalar(select(Image).where(Image.sha256 == loaded.sha256))
        if image is None:
            image = Image(sha256=loaded.sha256, size=loaded.size, width=loaded.width,
                          height=loaded.height, format=loaded.format, status="ok")
            self.session.add(image)
            self.session.flush()
        else:
            self.counts.duplicates += 1
            if image.status == "missing":
                self.counts.revived.append(image.id)
            image.status = "ok"
        if loaded.thumbnail is not None:
            write_thumbnail(self.config, loaded.sha256, loaded.thumbnail)
        row.image_id, row.status, row.error = image.id, "ok", None
        self.counts.added += 1
        self._orphaned(previous, image.id)
        return image

    def _orphaned(self, previous: int | None, current: int | None) -> None:
        # A changed file leaves its old content behind: missing unless another path has it.
        if previous is not None and previous != current:
            self.session.flush()
            self.refresh_image_status([previous])

    def mark_missing(self, roots: Iterable[Path], seen: set[str]) -> list[int]:
        """Files under ``roots`` not seen in this walk are missing; returns images now missing."""
        prefixes = [str(Path(os.path.abspath(r))) for r in roots]
        gone: list[ImageFile] = []
        for prefix in prefixes:
            like = prefix.rstrip(os.sep) + os.sep
            rows = self.session.scalars(select(ImageFile).where(
                ImageFile.status != "missing",
                (ImageFile.path == prefix) | ImageFile.path.startswith(like, autoescape=True)))
            gone.extend(r for r in rows if r.path not in seen)
        for row in gone:
            row.status = "missing"
        self.counts.missing += len(gone)
        self.session.flush()
        now_missing = self.refresh_image_status({r.image_id for r in gone if r.image_id is not None})
        self.counts.moved += sum(1 for r in gone if r.image_id is not None and r.image_id not in now_missing)
        return now_missing

    def refresh_image_status(self, image_ids: Iterable[int]) -> list[int]:
        """An image is missing when none of its files is present; returns those ids."""
        missing = []
        for image_id in image_ids:
            present = self.session.scalar(select(ImageFile.id).where(
                ImageFile.image_id == image_id, ImageFile.status == "ok").limit(1))
            if present is None:
                missing.append(image_id)
        if missing:
            self.session.execute(update(Image).where(Image.id.in_(missing)).values(status="missing"))
        return missing
