"""Connection lifecycle: engines, sessions and schema upgrades. Nothing else opens connections."""

from __future__ import annotations

import ast
import os
import re
import sqlite3
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ..config import Config
from ..resources import resource_dir
from ..errors import CatalogError, FileAccessError, user_file

T = TypeVar("T")

MIGRATIONS = resource_dir("migrations")

_engines: dict[str, Engine] = {}


def sqlite_pragmas(dbapi_connection, _record=None) -> None:
    """Every SQLite connection's settings: WAL, foreign keys, synchronous NORMAL, a busy timeout."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def get_engine(config: Config) -> Engine:
    """One engine per database URL; SQLite gets WAL, foreign keys and a busy timeout."""
    url = config.db_url
    engine = _engines.get(url)
    if engine is None:
        if url.startswith("sqlite"):
            with user_file(config.home):
                config.home.mkdir(parents=True, exist_ok=True)
            _require_writable(config)
            engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(engine, "connect", sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True)
        _engines[url] = engine
    return engine


CATALOG_FILE = "catalog.db"


def require_catalog(config: Config) -> None:
    """For commands that only read: a home without a catalog is an error, and nothing is created.

    Only the catalog SQLite keeps inside the home is checked (a ``database_url`` is the server's).
    """
    if config.database_url is not None:
        return
    try:
        config.home.stat()
    except FileNotFoundError:
        raise CatalogError(f"no collection at {config.home}: the folder does not exist "
                           "(index some images first: manage.py index PATH)") from None
    except OSError as exc:
        raise FileAccessError(str(exc)) from exc
    if not (config.home / CATALOG_FILE).is_file():
        raise CatalogError(f"no collection at {config.home}: it holds no {CATALOG_FILE} "
                           "(index some images first: manage.py index PATH)")


def _require_writable(config: Config) -> None:
    # SQLite writes its journal beside the catalog even to read it (WAL), so a read-only home
    # fails on the first query; say so up front instead.
    if config.database_url is not None:
        return
    catalog = config.home / CATALOG_FILE
    if not os.access(config.home, os.W_OK | os.X_OK) or (catalog.exists() and not os.access(catalog, os.W_OK)):
        raise CatalogError(f"{config.home} is read-only: labeler needs to write its catalog there "
                           "(SQLite's journal too, even to read); give a writable --home")


# How long a write transaction waits for SQLite's write lock per attempt (read at connect time).
WRITE_BUSY_TIMEOUT_MS = 10_000


def _sqlite_own_transactions(dbapi_connection, record) -> None:
    sqlite_pragmas(dbapi_connection, record)
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(WRITE_BUSY_TIMEOUT_MS)}")
    cursor.close()
    dbapi_connection.isolation_level = None  # pysqlite must not BEGIN on its own: the "begin" event does


def _sqlite_begin_immediate(conn) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _write_engine(config: Config) -> Engine:
    """The engine of write transactions: on SQLite, each one begins with ``BEGIN IMMEDIATE``.

    SQLAlchemy's pysqlite recipe (isolation_level=None, then our own BEGIN). Taking the write lock
    before the first read means a transaction never reads a snapshot that another writer's commit
    has made stale, which SQLite answers at once with "database is locked" (SQLITE_BUSY_SNAPSHOT,
    no busy wait); waiting for the lock goes through the busy timeout instead. It is a second
    engine, not a change to every connection, so readers (every GET) keep WAL's concurrency and the
    rest of the app keeps pysqlite's deferred transactions. On PostgreSQL writes use the one engine.
    """
    url = config.db_url
    if not url.startswith("sqlite"):
        return get_engine(config)
    key = f"write:{url}"
    engine = _engines.get(key)
    if engine is None:
        get_engine(config)  # makes the home folder
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_own_transactions)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        _engines[key] = engine
    return engine


def dispose_engines() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()
    _factories.clear()  # they are bound to the engines just disposed


def alembic_config(config: Config):
    from alembic.config import Config as AlembicConfig  # lazy: Alembic only when the schema is checked or migrated

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", config.db_url.replace("%", "%%"))
    # The write engine: on SQLite it BEGINs itself, so the DDL of an upgrade is one transaction
    # (pysqlite alone commits before each DDL statement, and a full disk left a half-made schema).
    cfg.attributes["engine"] = _write_engine(config)
    return cfg


def upgrade(config: Config, revision: str = "head") -> None:
    """Bring the schema to ``revision`` through the Alembic migrations."""
    from alembic import command  # lazy: Alembic only when the schema is checked or migrated

    command.upgrade(alembic_config(config), revision)


def integrity_problems(config: Config, full: bool = False) -> list[str]:
    """What SQLite finds wrong with the catalog's pages: ``PRAGMA quick_check`` (``integrity_check``
    with ``full``, which also compares every index with its table); empty when sound. Other
    databases check themselves: always empty."""
    if not config.db_url.startswith("sqlite"):
        return []
    pragma = "integrity_check" if full else "quick_check"
    try:
        with get_engine(config).connect() as conn:
            lines = [row[0] for row in conn.exec_driver_sql(f"PRAGMA {pragma}(20)")]
    except DBAPIError as exc:  # too damaged even to check
        return [f"catalog: {str(exc.orig).splitlines()[0]}"]
    return [] if lines == ["ok"] else [f"catalog: {line}" for line in lines]


def current_revision(config: Config) -> str | None:
    from alembic.runtime.migration import MigrationContext  # lazy: Alembic only when the schema is checked or migrated

    with get_engine(config).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(config: Config) -> str | None:
    from alembic.script import ScriptDirectory  # lazy: Alembic only when the schema is checked or migrated

    return ScriptDirectory.from_config(alembic_config(config)).get_current_head()


_upgraded: set[str] = set()
_ASSIGNMENT = re.compile(r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(.+)$", re.MULTILINE)


def _file_head() -> str | None:
    """The one head of the migration files, read without importing Alembic; None when unclear."""
    revisions, parents = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = dict(_ASSIGNMENT.findall(path.read_text()))
        try:
            revisions.add(ast.literal_eval(found["revision"]))
            down = ast.literal_eval(found["down_revision"])
        except (KeyError, ValueError, SyntaxError):
            return None
        parents.update(down if isinstance(down, (tuple, list)) else [down])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _at_file_head(config: Config) -> bool:
    """Whether the catalog is at the migration files' head, by one query: Alembic's import and
    script scan cost every command a tenth of a second or more. Anything unclear says no, and
    :func:`ensure_schema` asks Alembic."""
    head = _file_head()
    if head is None:
        return False
    try:
        with get_engine(config).connect() as conn:
            stored = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except DBAPIError:  # no version table yet
        return False
    return stored == [head]


def ensure_schema(config: Config) -> None:
    """Run the migrations on first use (and after an upgrade of labeler)."""
    if config.db_url in _upgraded:
        return
    if not _at_file_head(config) and current_revision(config) != head_revision(config):
        upgrade(config)
    _upgraded.add(config.db_url)


_factories: dict[str, sessionmaker[Session]] = {}


def session_factory(config: Config) -> sessionmaker[Session]:
    """The one session factory of the database (its schema migrated on first use)."""
    ensure_schema(config)
    factory = _factories.get(config.db_url)
    if factory is None:
        factory = _factories[config.db_url] = sessionmaker(get_engine(config), expire_on_commit=False)
    return factory


@contextmanager
def session_scope(config: Config) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = session_factory(config)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def unchecked_references(config: Config) -> Iterator[sqlite3.Connection]:
    """SQLite only: a pooled driver connection whose statements skip foreign-key checks, no
    transaction open, for a bulk write that checks its references itself
    (:func:`labeler.store.sqlite_writer.write_batch`). Enforcement is on again before the connection
    goes back to the pool; a connection where it cannot be put back on is thrown away.
    """
    proxied = get_engine(config).raw_connection()
    raw = proxied.driver_connection
    try:
        raw.execute("PRAGMA foreign_keys = OFF")  # takes effect only outside a transaction: none is open
        yield raw
    finally:
        try:
            if raw.in_transaction:
                raw.rollback()
            raw.execute("PRAGMA foreign_keys = ON")
            restored = raw.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        except sqlite3.Error:
            restored = False
        if not restored:
            proxied.invalidate()
        proxied.close()


def sqlite_path(config: Config) -> str:
    """The catalog's file, for a process that opens it itself (SQLite only)."""
    return make_url(config.db_url).database


class CatalogBusy(CatalogError):
    """Other writers held the catalog for longer than a write may wait; try again shortly."""


WRITE_ATTEMPTS = 3
_RETRY_PAUSE_S = 0.05
# SQLite: SQLITE_BUSY and SQLITE_LOCKED (low byte of the extended code); PostgreSQL: serialization
# failure, deadlock detected, lock not available.
_SQLITE_BUSY_CODES = {5, 6}
_PG_RETRY_STATES = {"40001", "40P01", "55P03"}


def _is_busy(exc: OperationalError) -> bool:
    orig = exc.orig
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _SQLITE_BUSY_CODES
    if getattr(orig, "sqlstate", None) in _PG_RETRY_STATES:
        return True
    return "database is locked" in str(orig)


def write_transaction(config: Config, work: Callable[[Session], T], attempts: int = WRITE_ATTEMPTS) -> T:
    """Run ``work(session)`` in one write transaction and commit; returns what ``work`` returned.

    On SQLite the transaction holds the write lock from its first statement (``BEGIN IMMEDIATE``,
    waiting up to ``WRITE_BUSY_TIMEOUT_MS`` for it). A busy catalog or a PostgreSQL deadlock rolls back and
    reruns ``work`` from the start, at most ``attempts`` times in all, then raises
    :class:`CatalogBusy`. Any other error rolls back and propagates. ``work`` must therefore only
    touch the database through ``session``, and may run more than once.
    """
    ensure_schema(config)
    factory = _factories.get(f"write:{config.db_url}")
    if factory is None:
        factory = _factories[f"write:{config.db_url}"] = sessionmaker(_write_engine(config), expire_on_commit=False)
    for attempt in range(1, attempts + 1):
        session = factory()
        try:
            result = work(session)
            session.commit()
            return result
        except OperationalError as exc:
            session.rollback()
            if not _is_busy(exc):
                raise
            if attempt == attempts:
                raise CatalogBusy(f"the catalog stayed busy with other writers ({attempts} tries); "
                                  "try again in a moment") from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
        time.sleep(_RETRY_PAUSE_S * attempt)
    raise AssertionError("unreachable")  # the loop returns or raises


def driver_rows(session: Session, query) -> list[tuple]:
    """``query``'s rows as the driver returns them, plain tuples, in ``session``'s transaction: for
    a million rows SQLAlchemy's Row objects cost more than the database's reading (1.8 of 2.8 s for
    vectors). Its parameters must need no conversion (numbers and text)."""
    connection = session.connection()
    compiled = query.compile(dialect=connection.dialect)
    params = [compiled.params[k] for k in compiled.positiontup] if compiled.positional else compiled.params
    cursor = connection.connection.driver_connection.cursor()
    try:
        cursor.execute(str(compiled), params)
        return cursor.fetchall()
    finally:
        cursor.close()


BULK_CACHE_KIB = 256 * 1024  # as sqlite_writer.CACHE_KIB (that process runs without SQLAlchemy)
INDEX_BUILD_MMAP = 1 << 33  # bytes; SQLite caps it at its build's maximum (2 GiB in most)


@contextmanager
def bulk_page_cache(session: Session, kib: int = BULK_CACHE_KIB) -> Iterator[None]:
    """SQLite: ``session``'s connection keeps up to ``kib`` KiB of pages inside, so a bulk write
    that touches an index page again and again writes it once at commit instead of spilling it to
    the WAL each time (an accept chunk of 50,000 labels at 9M: 4.9 s of UPDATE → 2.5 s); the pooled
    connection then gets its own size back. Elsewhere, nothing."""
    if session.get_bind().dialect.name != "sqlite":
        yield
        return
    cursor = session.connection().connection.driver_connection.cursor()  # this unit of work's transaction
    before = cursor.execute("PRAGMA cache_size").fetchone()[0]
    try:
        cursor.execute(f"PRAGMA cache_size = -{kib}")
        yield
    finally:
        cursor.execute(f"PRAGMA cache_size = {int(before)}")
        cursor.close()


@contextmanager
def index_build_settings(session: Session) -> Iterator[None]:
    """SQLite: ``CREATE INDEX`` in ``session``'s connection reads the table through a memory map
    and sorts with a helper thread per core; the pooled connection then gets its own settings back.
    Building the six queue indexes over 9,000,000 labels: 49.6 and 48.7 s without, 38.7 and 34.4 s
    with (alternating, in ``ROLLBACK``ed transactions on one home). A bigger page cache made it
    slower (14.6 → 20.2 s for one index). Elsewhere, nothing."""
    if session.get_bind().dialect.name != "sqlite":
        yield
        return
    cursor = session.connection().connection.driver_connection.cursor()  # this unit of work's transaction
    threads = cursor.execute("PRAGMA threads").fetchone()[0]
    mmap = cursor.execute("PRAGMA mmap_size").fetchone()[0]
    try:
        cursor.execute(f"PRAGMA threads = {os.cpu_count() or 1}")
        cursor.execute(f"PRAGMA mmap_size = {INDEX_BUILD_MMAP}")
        yield
    finally:
        cursor.execute(f"PRAGMA threads = {int(threads)}")
        cursor.execute(f"PRAGMA mmap_size = {int(mmap)}")
        cursor.close()


# PostgreSQL plans from table statistics that autovacuum refreshes a minute or more after a bulk
# load. A first ``label`` started right after 1,000,000 images came in planned the cold-start
# sample's read as a nested loop over "1" present image (the stale estimate) and probed a
# 10,000-id list for each of the million: minutes on one query. Its own advice for populating a
# database: ANALYZE afterwards (a sample of 30,000 rows a table, about a second).
BULK_ANALYZE_ROWS = 10_000


def analyze_after_bulk(session: Session, rows: int, tables: tuple[str, ...]) -> bool:
    """On PostgreSQL, refresh the planner's statistics of ``tables`` when a run wrote ``rows``
    (at least :data:`BULK_ANALYZE_ROWS`) into them; returns whether it did. SQLite: nothing (its
    plans are chosen without statistics, and the queries are written for that)."""
    if rows < BULK_ANALYZE_ROWS or session.get_bind().dialect.name != "postgresql":
        return False
    for table in tables:
        session.execute(text(f"ANALYZE {table}"))
    return True
