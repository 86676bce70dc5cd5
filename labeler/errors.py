"""Errors a user can cause. The CLI and the HTTP layer turn them into one clear message."""

from __future__ import annotations

import csv
import errno
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class LabelerError(Exception):
    """A problem the user can fix; ``exit_code`` is what the CLI exits with."""

    exit_code = 2


class ModelUnavailable(LabelerError):
    """The model's weights cannot be loaded."""


class CatalogError(LabelerError):
    """The catalog or index is not in a state the command can work with."""


class NotFound(LabelerError):
    """An image, label or other record that does not exist."""


class FileAccessError(LabelerError):
    """A file or folder the user named cannot be read, written or created."""

    exit_code = 1


class ConfigError(LabelerError):
    """A setting in the environment that labeler cannot use."""

    exit_code = 1


class ServeError(LabelerError):
    """The server cannot listen where it was asked to (the port is taken, say)."""

    exit_code = 1


class DiskFull(LabelerError):
    """The disk (or the user's quota, or the file size limit) ran out; what was committed stays."""

    exit_code = 1


_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def disk_full(exc: BaseException) -> DiskFull | None:
    """``exc`` as a :class:`DiskFull` when it says the disk is full (an ``OSError`` with ENOSPC,
    EDQUOT or EFBIG, or SQLite's SQLITE_FULL, however wrapped), else None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            where = f" writing {exc.filename}" if exc.filename else ""
            return DiskFull(f"disk full{where} ({exc.strerror}): what was already saved is kept; "
                            "free some space and run it again")
        if "database or disk is full" in str(exc):
            return DiskFull("disk full writing the catalog (SQLite: database or disk is full): the last "
                            "transaction was rolled back and what was already saved is kept; free some "
                            "space and run it again")
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
    return None


@contextmanager
def user_file(path: Path | str) -> Iterator[None]:
    """Report an unreadable, unwritable or undecodable file the user named as a :class:`FileAccessError`."""
    try:
        yield
    except OSError as exc:
        raise FileAccessError(str(exc)) from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise FileAccessError(f"{path}: not a readable UTF-8 CSV file: {exc}") from exc
