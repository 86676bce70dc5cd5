"""Bulk writes to a SQLite catalog: one statement over many rows, checked by reference once.

SQLite checks every foreign key of every row it writes; a bulk writer whose rows all point at a
few known parents can check those itself, once, in the same write transaction
(:func:`check_references`). :class:`WriterProcess` runs such writes in a process of its own, so
the next batch is read, scored and planned on the other core while this one is written. A
thread cannot do that here: ``executemany`` gives up the interpreter lock and takes it back for
every row, and a thread doing Python work between takes it away each time (measured slower than
writing in turn). Only numbers, text and bytes cross to the process, which imports no model
and no numpy.
"""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import subprocess
import sys
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import Sequence

from ..errors import CatalogError
from .label_totals import BUMP_SQL, new_token

CACHE_KIB = 256 * 1024  # a batch's index pages stay in memory while it is written

# (table, ids): rows written refer to these ids of that table; each must still be there
References = Sequence[tuple[str, Sequence[int]]]


def check_references(cursor: sqlite3.Cursor, references: References) -> str | None:
    """What SQLite's foreign keys would have refused: None when every id is still in its table,
    else which are gone ("2 of images")."""
    gone = []
    for table, ids in references:
        ids = list(ids)
        found = cursor.execute(f"SELECT count(*) FROM {table} WHERE id IN (SELECT value FROM json_each(?))",
                               (json.dumps(ids),)).fetchone()[0]
        if found != len(ids):
            gone.append(f"{len(ids) - found} of {table}")
    return ", ".join(gone) or None


def _refused(gone: str) -> CatalogError:
    return CatalogError(f"labeling stopped: rows it labels were deleted from the catalog while it ran "
                        f"({gone}); nothing of this chunk was written: run label again")


def write_batch(connection: sqlite3.Connection, sql: str, rows: list[tuple], references: References) -> int:
    """``sql`` over ``rows`` in one write transaction on ``connection`` (foreign keys off, none
    open): committed with the number of rows written, or rolled back and raised. Rows written mark
    the labels as added to (``label_totals``) in the same transaction."""
    cursor = connection.cursor()
    try:
        cursor.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        cursor.execute("BEGIN IMMEDIATE")
        try:
            cursor.executemany(sql, rows)
            written = cursor.rowcount if cursor.rowcount >= 0 else len(rows)
            if written:
                cursor.execute(BUMP_SQL, {"token": new_token()})
            gone = check_references(cursor, references)
            if gone:
                raise _refused(gone)
        except BaseException:
            connection.rollback()
            raise
        connection.commit()
        return written
    finally:
        cursor.close()


def _serve(pipe: Connection) -> None:
    """The process: the first message is ``(path, sql)``; each later one ``(rows, references)`` to
    write, or None to stop. Each batch gets an answer, ``("ok", written)`` or ``("error",
    message)``; after an error, later batches are answered ``("skipped", 0)`` unwritten, so the
    run stops at the chunk that failed."""
    from . import db  # lazy: the writer process itself needs no SQLAlchemy

    path, sql = pickle.loads(pipe.recv_bytes())
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.sqlite_pragmas(connection)
    connection.execute("PRAGMA foreign_keys = OFF")  # write_batch checks each batch's references
    failed = False
    while (message := pickle.loads(pipe.recv_bytes())) is not None:
        if failed:
            pipe.send(("skipped", 0))
            continue
        rows, references = message
        try:
            pipe.send(("ok", write_batch(connection, sql, rows, references)))
        except (sqlite3.Error, CatalogError) as exc:
            failed = True
            pipe.send(("error", str(exc)))
    connection.close()


def python_interpreter() -> str:
    """The Python that runs this process, as a program to start: ``sys.executable``, unless a WSGI
    host embeds Python (uWSGI's is the ``uwsgi`` binary), then the environment's ``bin/python3``.
    Raises :class:`CatalogError` when there is none to be found."""
    candidates = [Path(sys.executable)] if Path(sys.executable).name.startswith("python") else []
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for prefix in dict.fromkeys((sys.prefix, sys.exec_prefix, sys.base_prefix)):
        candidates += [Path(prefix) / "bin" / name for name in ("python3", version, "python")]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise CatalogError(f"cannot start the catalog's writer process: this process runs in {sys.executable}, "
                       f"not a Python interpreter, and {sys.prefix} holds no bin/python3")


class WriterProcess:
    """``with WriterProcess(path, sql) as writer``: :meth:`submit` batches, :meth:`result` takes
    the oldest one's written count (raising its error), in order.

    One batch is written while the next waits in the pipe: :meth:`submit` blocks until the
    process has taken the batch before. Leaving the block normally waits for the process;
    leaving on an error (or Ctrl-C) stops it at once, and SQLite rolls back its open batch.
    A plain ``python -m labeler.store.sqlite_writer``: multiprocessing's spawn would import the
    caller's main module again in the child (the whole CLI), and fork is unsafe from a thread
    of the web server.
    """

    def __init__(self, path: str, sql: str):
        self._pipe, child = Pipe()
        self._process = subprocess.Popen([python_interpreter(), "-m", __name__, str(child.fileno())],
                                         pass_fds=[child.fileno()], stdin=subprocess.DEVNULL)
        child.close()
        self._send((path, sql))

    def submit(self, rows: list[tuple], references: References) -> None:
        self._send((rows, [(t, list(ids)) for t, ids in references]))

    def result(self) -> int:
        try:
            status, value = self._pipe.recv()
        except EOFError:
            raise self._died() from None
        if status == "error":
            raise CatalogError(value)
        return value

    def _send(self, message) -> None:
        try:
            self._pipe.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:  # BrokenPipeError: it died
            raise self._died() from None

    def _died(self) -> CatalogError:
        try:
            code = self._process.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        return CatalogError(f"the catalog's writer process stopped (exit code {code}); "
                            "what it committed stays: run the command again")

    def __enter__(self) -> "WriterProcess":
        return self

    def __exit__(self, kind, _value, _traceback) -> None:
        try:
            if kind is None:
                self._send(None)
                self._process.wait()
        finally:
            if self._process.poll() is None:
                self._process.kill()
                self._process.wait()
            self._pipe.close()


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
