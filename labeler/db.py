"""Connection lifecycle: engines, sessions and schema upgrades. Nothing else opens connections."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from .config import Config
from .resources import resource_dir
from .errors import CatalogError, FileAccessError, user_file

MIGRATIONS = resource_dir("migrations")

_engines: dict[str, Engine] = {}


def _sqlite_pragmas(dbapi_connection, _record) -> None:
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
            event.listen(engine, "connect", _sqlite_pragmas)
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


def dispose_engines() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()
    _factories.clear()  # they are bound to the engines just disposed


def alembic_config(config: Config):
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", config.db_url.replace("%", "%%"))
    cfg.attributes["engine"] = get_engine(config)
    return cfg


def upgrade(config: Config, revision: str = "head") -> None:
    """Bring the schema to ``revision`` through the Alembic migrations."""
    from alembic import command

    command.upgrade(alembic_config(config), revision)


def current_revision(config: Config) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with get_engine(config).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(config: Config) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(config)).get_current_head()


_upgraded: set[str] = set()


def ensure_schema(config: Config) -> None:
    """Run the migrations on first use (and after an upgrade of labeler)."""
    if config.db_url in _upgraded:
        return
    if current_revision(config) != head_revision(config):
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
