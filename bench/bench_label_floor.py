#!/usr/bin/env python
"""The floor under a first ``label`` at 1M: what the database engine alone takes to store the labels
and build the indexes the queue pages need, with no Python, no model and no scoring.

Issue 23 asks ``label`` at 1,000,000 images x 8 groups for at most 30 s and 1 GB of catalog growth
on SQLite (and 60 s on PostgreSQL), and every queue sort served from an index in at most 150 ms.
This bench asks the engine for the cheapest version of the writes such a run must make: it fills a
table with ``--images`` x ``--groups`` rows generated inside the engine (SQLite: a recursive CTE;
PostgreSQL: ``generate_series``), in one transaction, then builds the indexes one by one, and prints
the seconds and bytes of each schema:

* ``catalog``: today's ``labels`` table and indexes, from the migrations (group, value, status and
  strategy as text, the per-option scores as a blob), values drawn from the workshop prompt set;
* ``skeleton``: only what a queue needs, every text a small integer (group, value, proposal,
  status), the scores as 8-byte floats, no per-option scores, no provenance, no timestamps, and the
  same six orders (a label per image and group, and the id, margin, confidence, rank and value
  orders of a group and status);
* ``skeleton-int16``: the same with confidence and margin as 16-bit integers.

Each figure is a floor for ``label``: a real run also reads the vectors, scores them, and passes
every row from Python. Run on a quiet machine and name the CPU:

    PYTHONPATH=. .venv/bin/python bench/bench_label_floor.py WORKDIR [--images 1000000] [--groups 8]
        [--postgres] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labeler.core.prompts import load_prompt_set  # noqa: E402

SCHEMAS = ("catalog", "skeleton", "skeleton-int16")

# the queue's six orders over a label per image and group; ``{score}`` is the scores' column type
SKELETON_TABLE = """CREATE TABLE floor (id INTEGER PRIMARY KEY, image_id INTEGER NOT NULL, g INTEGER NOT NULL,
    value INTEGER, predicted INTEGER, confidence {score}, margin {score}, status INTEGER NOT NULL,
    rank INTEGER, version INTEGER NOT NULL)"""
SKELETON_INDEXES = [
    "CREATE UNIQUE INDEX floor_image ON floor (image_id, g)",
    "CREATE INDEX floor_id ON floor (g, status, id)",
    "CREATE INDEX floor_margin ON floor (g, status, margin, id)",
    "CREATE INDEX floor_confidence ON floor (g, status, confidence, id)",
    "CREATE INDEX floor_rank ON floor (g, status, rank, id)",
    "CREATE INDEX floor_value ON floor (g, value, image_id)",
]
# SQLite keeps the rowid at the end of every index entry already, so its indexes leave ``id`` out
SQLITE_SKELETON_INDEXES = [ddl.replace(", id)", ")") for ddl in SKELETON_INDEXES]


def groups(count: int) -> list[tuple[str, list[str]]]:
    """The first ``count`` groups of the workshop prompt set with their option names."""
    found = list(load_prompt_set("workshop").groups.values())[:count]
    if len(found) < count:
        raise SystemExit(f"error: --groups {count}: the workshop set has {len(found)}")
    return [(group.name, [option.name for option in group.options]) for group in found]


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _pick(options: list[str], draw: str) -> str:
    """SQL for the option named by ``draw`` (an integer below ``len(options)``)."""
    return "CASE " + draw + "".join(f" WHEN {k} THEN {_quoted(name)}" for k, name in enumerate(options)) + " END"


def _score(expression: str, int16: bool) -> str:
    """A score in [0, 1] as stored: itself, or as a 16-bit integer (PostgreSQL's smallint is signed)."""
    return f"CAST(({expression}) * 32767 AS INTEGER)" if int16 else expression


def _index_name(ddl: str) -> str:
    return ddl.split(" ON ")[0].split()[-1]


def _rows_sqlite(schema: str, images: int, g: int, name: str, options: list[str]) -> str:
    """One group's ``images`` rows, generated in SQLite."""
    unit = "(abs(random()) / 9223372036854775807.0)"
    source = (f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {images}), "
              f"d AS MATERIALIZED (SELECT i, abs(random()) % {len(options)} AS r, {unit} AS c, "
              f"abs(random()) % {images} AS rank FROM s) ")
    if schema == "catalog":
        return (source + 'INSERT INTO labels (image_id, "group", value, predicted, confidence, margin, strategy, '
                "option_scores, prompt_set_id, informative_rank, status, updated_at, version) "
                f"SELECT i, {_quoted(name)}, {_pick(options, 'r')}, {_pick(options, 'r')}, c, c * {unit}, "
                f"'mean-embedding', randomblob({4 * len(options)}), 1, rank, 'proposed', 1765000000, 1 FROM d")
    int16 = schema == "skeleton-int16"
    return (source + "INSERT INTO floor (image_id, g, value, predicted, confidence, margin, status, rank, version) "
            f"SELECT i, {g}, r, r, {_score('c', int16)}, {_score('c * ' + unit, int16)}, 0, rank, 1 FROM d")


def _sqlite_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def sqlite_floor(workdir: Path, schema: str, images: int, chosen: list[tuple[str, list[str]]]) -> dict:
    """Fill and index one schema in a fresh SQLite file under ``workdir``."""
    folder = workdir / f"floor-{schema}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    path = folder / "catalog.db"
    if schema == "catalog":
        from labeler.config import Config
        from labeler.store import db

        db.upgrade(Config(home=folder))
        db.dispose_engines()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")  # labeler's own setting (db.sqlite_pragmas)
    if schema == "catalog":
        indexes = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'labels' "
                               "AND sql IS NOT NULL").fetchall()
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        conn.execute(SKELETON_TABLE.format(score="INTEGER" if schema == "skeleton-int16" else "REAL"))
        indexes = [(_index_name(ddl), ddl) for ddl in SQLITE_SKELETON_INDEXES]
    before = _sqlite_size(path)
    phases: dict[str, float] = {}
    started = time.perf_counter()
    conn.execute("BEGIN")
    for g, (name, options) in enumerate(chosen):
        conn.execute(_rows_sqlite(schema, images, g, name, options))
    conn.execute("COMMIT")
    phases["rows"] = time.perf_counter() - started
    conn.execute(f"PRAGMA threads = {os.cpu_count() or 1}")  # as labeler builds them (db.index_build_settings)
    conn.execute("PRAGMA mmap_size = 17179869184")
    for name, ddl in indexes:
        begun = time.perf_counter()
        conn.execute(ddl)
        phases[name] = time.perf_counter() - begun
    seconds = time.perf_counter() - started
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the file alone, as small as these pages get
    growth = _sqlite_size(path) - before
    conn.close()
    shutil.rmtree(folder, ignore_errors=True)
    return _result(schema, images, len(chosen), seconds, growth, phases)


def _result(schema: str, images: int, group_count: int, seconds: float, growth: int, phases: dict) -> dict:
    labels = images * group_count
    return {"schema": schema, "labels": labels, "seconds": round(seconds, 1), "growth_bytes": growth,
            "bytes_per_label": round(growth / labels, 1),
            "phases": {name: round(value, 1) for name, value in phases.items()}}


def _rows_postgres(schema: str, images: int, g: int, name: str, options: list[str]) -> str:
    """One group's ``images`` rows, generated in PostgreSQL."""
    source = (f"FROM (SELECT i, floor(random() * {len(options)})::int AS r, random() AS c, "
              f"floor(random() * {images})::int AS rank FROM generate_series(1, {images}) AS i) AS d")
    if schema == "catalog":
        return ('INSERT INTO floor (image_id, "group", value, predicted, confidence, margin, strategy, '
                "option_scores, prompt_set_id, informative_rank, status, updated_at, version) "
                f"SELECT i, {_quoted(name)}, {_pick(options, 'r')}, {_pick(options, 'r')}, c, c * random(), "
                f"'mean-embedding', decode(repeat('00', {4 * len(options)}), 'hex'), 1, rank, 'proposed', now(), 1 "
                + source)
    int16 = schema == "skeleton-int16"
    return ("INSERT INTO floor (image_id, g, value, predicted, confidence, margin, status, rank, version) "
            f"SELECT i, {g}, r, r, {_score('c', int16)}, {_score('c * random()', int16)}, 0, rank, 1 " + source)


def postgres_floor(url: str, schema: str, images: int, chosen: list[tuple[str, list[str]]]) -> dict:
    """Fill and index one schema on the PostgreSQL database at ``url`` (the catalog's from the migrations)."""
    from sqlalchemy import create_engine

    from labeler.config import Config
    from labeler.store import db

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        driver = conn.connection.driver_connection  # no parameters: a "%" in an index stays itself

        def sql(statement: str):
            return driver.execute(statement)
        if schema == "catalog":
            db.upgrade(Config(home=Path("/nonexistent"), database_url=url))
            db.dispose_engines()
            # labels as a first run writes it: the primary key and the one-per-image-and-group key
            # kept, the queue indexes and foreign keys set aside (labeler.store.queue_indexes)
            sql("CREATE TABLE floor (LIKE labels INCLUDING DEFAULTS)")
            sql("ALTER TABLE floor ADD PRIMARY KEY (id)")
            sql('ALTER TABLE floor ADD UNIQUE (image_id, "group")')
            indexes = [(name, ddl.replace(f"INDEX {name} ON public.labels", f"INDEX floor_{name} ON public.floor"))
                       for name, ddl in sql("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'labels' "
                                            "AND left(indexname, 3) = 'ix_'").fetchall()]
        else:
            score = "smallint" if schema == "skeleton-int16" else "real"
            sql(SKELETON_TABLE.replace("INTEGER PRIMARY KEY", "integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
                .replace("g INTEGER", "g smallint").replace("status INTEGER", "status smallint")
                .replace("value INTEGER", "value smallint").replace("predicted INTEGER", "predicted smallint")
                .replace("version INTEGER", "version smallint").format(score=score))
            indexes = [(_index_name(ddl), ddl) for ddl in SKELETON_INDEXES]
        before = sql("SELECT pg_total_relation_size('floor')").fetchone()[0]
        phases: dict[str, float] = {}
        started = time.perf_counter()
        sql("BEGIN")
        for g, (name, options) in enumerate(chosen):
            sql(_rows_postgres(schema, images, g, name, options))
        sql("COMMIT")
        phases["rows"] = time.perf_counter() - started
        for name, ddl in indexes:
            begun = time.perf_counter()
            sql(ddl)
            phases[name] = time.perf_counter() - begun
        seconds = time.perf_counter() - started
        growth = sql("SELECT pg_total_relation_size('floor')").fetchone()[0] - before
        sql("DROP TABLE floor")
    engine.dispose()
    return _result(schema, images, len(chosen), seconds, growth, phases)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path, help="where the SQLite files are made (and removed)")
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=8, help="the first N groups of the workshop set")
    parser.add_argument("--schemas", default=",".join(SCHEMAS))
    parser.add_argument("--postgres", action="store_true", help="on a throwaway PostgreSQL server instead")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    schemas = args.schemas.split(",")
    unknown = sorted(set(schemas) - set(SCHEMAS))
    if unknown:
        raise SystemExit(f"error: unknown schema {', '.join(unknown)} (known: {', '.join(SCHEMAS)})")
    chosen = groups(args.groups)
    if args.postgres:
        from bench.bench_rank_ahead import postgres

        with postgres(["floor"]) as urls:
            results = [postgres_floor(urls["floor"], schema, args.images, chosen) for schema in schemas]
    else:
        results = [sqlite_floor(args.workdir, schema, args.images, chosen) for schema in schemas]
    engine = "postgresql" if args.postgres else "sqlite"
    if args.json:
        print(json.dumps({"engine": engine, "images": args.images, "groups": args.groups, "runs": results}, indent=2))
        return
    print(f"the engine alone: {args.images:,} images x {args.groups} groups on {engine}")
    for result in results:
        print(f"{result['schema']:<16} {result['seconds']:>7.1f} s  {result['growth_bytes'] / 1e9:>6.2f} GB  "
              f"{result['bytes_per_label']:>6.1f} B a label   "
              + ", ".join(f"{name} {value:.1f} s" for name, value in result["phases"].items()))


if __name__ == "__main__":
    main()
