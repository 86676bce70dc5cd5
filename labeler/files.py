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
    if durable:  # exports and indexes: few writes, each worth a look for what a kill -9 left
        remove_stale_temporaries(path)
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


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete the temporary files of ``path`` left by writers that no longer run (a ``kill -9``
    during an export, say); a live writer's are left alone. Returns what was deleted."""
    removed = []
    prefix = f".{path.name}."
    try:
        names = [n for n in os.listdir(path.parent) if n.startswith(prefix) and n.endswith(".tmp")]
    except OSError:
        return removed
    for name in names:
        pid = name[len(prefix):-len(".tmp")].split(".")[0]
        if pid.isdigit() and not _running(int(pid)):
            try:
                (path.parent / name).unlink()
                removed.append(path.parent / name)
            except OSError:
                pass
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def write_atomically(path: Path, data: bytes | str, durable: bool = True) -> None:
    """Write ``data`` (text as UTF-8, newlines untranslated) to ``path`` atomically."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    replace_atomically(path, lambda tmp: tmp.write_bytes(raw), durable)
