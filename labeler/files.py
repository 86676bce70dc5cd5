"""Atomic file writes: a crash or a failed write leaves either the old file or the new one, never half."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable


def apply_umask(umask: int) -> None:
    """Make ``umask`` this process's (``Config.umask``): every file and folder created after it,
    by labeler, SQLite or FAISS, is no more open than it allows."""
    os.umask(umask)


def replace_atomically(path: Path, write: Callable[[Path], None], durable: bool = True) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    ``durable`` fsyncs the file and its folder so the rename survives a power cut; a cache
    that can be rebuilt (thumbnails) skips that cost. A failed ``write`` leaves no temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # pid and thread in the name: two writers of one path never share a temporary file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write(tmp)
        if durable:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_atomically(path: Path, data: bytes | str, durable: bool = True) -> None:
    """Write ``data`` (text as UTF-8, newlines untranslated) to ``path`` atomically."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    replace_atomically(path, lambda tmp: tmp.write_bytes(raw), durable)
