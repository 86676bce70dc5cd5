"""A throwaway PostgreSQL server for tests: initdb into a temporary folder, a Unix socket only."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    # Debian's postgresql keeps its server programs off PATH, one folder per major version: take the newest.
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    return max(candidates, key=_major_version, default=None)


def _major_version(path: str) -> tuple[int, ...]:
    """``/usr/lib/postgresql/15/bin/initdb`` -> (15,); 9.6 sorts below 15."""
    version = Path(path).parent.parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def available() -> str | None:
    """Why a server cannot be started here, or None when it can."""
    if not (_pg_bin("initdb") and _pg_bin("pg_ctl")):
        return "PostgreSQL server binaries (initdb, pg_ctl) are not installed (scripts/setup.sh --test installs them)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e .[test])"
    return None


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server as the ``postgres`` user when run as root; yield a SQLAlchemy URL."""
    folder = Path(tempfile.mkdtemp(prefix="labeler-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data = folder / "data"
    run = lambda *cmd: subprocess.run(as_user + list(cmd), check=True, capture_output=True)  # noqa: E731
    try:
        run(_pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "labeler", "--no-sync")
        run(_pg_bin("pg_ctl"), "-D", str(data), "-w", "-l", str(folder / "log"), "-o",
            f"-k {folder} -c listen_addresses='' -c fsync=off", "start")
        try:
            run(_pg_bin("createdb") or "createdb", "-h", str(folder), "-U", "labeler", "labeler")
            yield f"postgresql+psycopg://labeler@/labeler?host={folder}"
        finally:
            run(_pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
