"""Connection lifecycle: engines, sessions and schema upgrades. Nothing else opens connections."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.orm import Session, sessionmaker

from .config import Config
from .errors import user_file

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

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
            engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True)
        _engines[url] = engine
    return engine


def dispose_engines() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


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


def session_factory(config: Config) -> sessionmaker[Session]:
    ensure_schema(config)
    return sessionmaker(get_engine(config), expire_on_commit=False)


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


def table_names(config: Config) -> list[str]:
    return inspect(get_engine(config)).get_table_names()
