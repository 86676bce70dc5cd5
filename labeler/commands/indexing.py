"""Building and keeping a collection: db upgrade, index, ingest, embed, check, stats."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..store import db
from ..config import ENGINES
from ..encoding.encoder import MODES
from .context import Progress, emit, get_collection, get_config, json_option

if TYPE_CHECKING:
    from ..collection import Collection


@click.group("db")
def db_group() -> None:
    """Manage the catalog's schema."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@json_option
def db_upgrade(revision: str, as_json: bool) -> None:
    """Apply the Alembic migrations."""
    config = get_config()
    db.upgrade(config, revision)
    emit(as_json, {"revision": db.current_revision(config), "url": config.db_url},
         lambda d: click.echo(f"catalog at revision {d['revision']} ({d['url']})"))


def _print_index(report: dict) -> None:
    click.echo(f"{report['files']} files: {report['added']} added, {report['unchanged']} unchanged, "
               f"{report['failed']} failed, {report['skipped']} skipped, {report['missing']} missing; "
               f"{report['embedded']} embedded in {report['seconds']:.1f}s")
    for failure in report["failures"][:20]:
        click.echo(f"  failed: {failure['path']}: {failure['reason']}", err=True)
    if len(report["failures"]) > 20:
        click.echo(f"  ... and {len(report['failures']) - 20} more (see --json)", err=True)
    for skip in report["skips"][:20]:
        click.echo(f"  skipped: {skip['path']}: {skip['reason']}", err=True)


def _with_mode(mode: str | None, as_json: bool, **settings) -> Collection:
    """The collection, in encoder ``mode`` when given (and with ``settings``); a first ONNX
    export says what it does."""
    from ..collection import Collection

    if mode:
        settings["encoder_mode"] = mode
    collection = Collection(get_config().with_(**settings)) if settings else get_collection()
    if not as_json:
        collection.models.on_export = lambda line: click.echo(line, err=True)
    return collection


mode_option = click.option("--mode", type=click.Choice(MODES), default=None,
                           help="Encoder mode [env LABELER_ENCODER_MODE; default: the collection's, else fp32]: "
                                "fp32 (ONNX Runtime), int8 (faster, cosine >= 0.99, kept apart), torch.")


def _run_index(paths: tuple[Path, ...], embed: bool, as_json: bool, mode: str | None = None,
               engine: str | None = None, address: str | None = None) -> None:
    from ..ingest.run import index_paths  # images and decoding: only for the commands that read files

    engine = engine or ("ray" if address else None)  # --address alone means the ray engine
    engine_settings = {"engine": engine, "engine_address": address} if engine else {}
    collection = _with_mode(mode, as_json, **engine_settings)
    label = "indexing" if embed else "ingesting"
    with Progress(label, None, quiet=as_json) as bar:
        report = index_paths(collection, list(paths), embed=embed, progress=bar.update, total=bar.set_total)
    emit(as_json, report.to_dict(), _print_index)


paths_argument = click.argument("paths", nargs=-1, required=True,
                                type=click.Path(exists=True, path_type=Path))


@click.command("index")
@paths_argument
@mode_option
@click.option("--engine", type=click.Choice(ENGINES), default=None,
              help="Where decoding and embedding run: local threads, or Ray Data stages "
                   "[env LABELER_ENGINE; default local].")
@click.option("--address", default=None, metavar="ADDR",
              help="The Ray cluster to join, e.g. 10.0.0.1:6379 [env RAY_ADDRESS; default: start one here].")
@json_option
def index_cmd(paths: tuple[Path, ...], mode: str | None, engine: str | None, address: str | None,
              as_json: bool) -> None:
    """Register every image under PATHS and embed what is new (incremental)."""
    _run_index(paths, True, as_json, mode, engine, address)


@click.command("ingest")
@paths_argument
@json_option
def ingest_cmd(paths: tuple[Path, ...], as_json: bool) -> None:
    """Register images (hash, decode, thumbnail) without embedding them."""
    _run_index(paths, False, as_json)


@click.command("embed")
@mode_option
@json_option
def embed_cmd(mode: str | None, as_json: bool) -> None:
    """Embed every registered image that has no vector for the collection's model."""
    from ..ingest.run import embed_pending

    collection = _with_mode(mode, as_json)
    with Progress("embedding", None, quiet=as_json) as bar:
        embedded = embed_pending(collection, progress=bar.update, total=bar.set_total)
    emit(as_json, {"embedded": embedded, "model": collection.models.spec()},
         lambda d: click.echo(f"{d['embedded']} embedded with {d['model']}"))


CATALOG_UNREPAIRABLE = ("the catalog itself is damaged, which --repair cannot fix: stop every labeler process, "
                        "copy the home, then restore a backup of catalog.db or salvage it with "
                        "`sqlite3 catalog.db .recover | sqlite3 recovered.db`")


@click.command("check")
@click.option("--repair", is_flag=True, help="Rebuild the index from the catalog's stored vectors.")
@click.option("--full", is_flag=True, help="SQLite's integrity_check (every index against its table), "
                                           "not only quick_check.")
@json_option
def check_cmd(repair: bool, full: bool, as_json: bool) -> None:
    """Verify the catalog's pages (SQLite quick_check), that the index ids equal the catalog's
    embedded ids and that a sample of its vectors equals the stored ones (cosine); report its
    type and measured recall@10."""
    config = get_config()
    db.require_catalog(config)  # a read command: a missing home is reported, not created
    collection = get_collection()
    catalog_problems = db.integrity_problems(config, full)
    problems = list(catalog_problems)
    if not catalog_problems:  # a damaged catalog cannot be compared with anything
        problems += collection.index_cache.problems()
    repaired, unrepaired = False, []
    if problems and repair:
        if catalog_problems:
            unrepaired = [CATALOG_UNREPAIRABLE]
        else:
            collection.index_cache.sync(rebuild=True)
            repaired = True
            problems = collection.index_cache.problems()
    # Only a sound index is described: opening a broken one would rebuild it, which is --repair's call.
    info = {"index": None, "recall": None} if problems else _index_info(collection)
    data = {"ok": not problems, "problems": problems, "repaired": repaired, "unrepaired": unrepaired, **info}

    def human(d: dict) -> None:
        for problem in d["problems"]:
            click.echo(f"problem: {problem}")
        for line in d["unrepaired"]:
            click.echo(f"not repaired: {line}")
        if d["index"]:
            click.echo(_describe(d))
        hint = "" if d["unrepaired"] else " (try --repair)"
        click.echo(("repaired; " if d["repaired"] else "") + ("ok" if d["ok"] else f"not ok{hint}"))

    emit(as_json, data, human)
    if problems:
        click.get_current_context().exit(1)  # the report above says why; no error line


def _index_info(collection) -> dict:
    """``index`` (type, factory, vectors, nlist/nprobe, stamp) and its measured ``recall`` (@10, on
    stored vectors as queries); both None before the collection has a model or with problems."""
    if collection.models.current_id() is None:
        return {"index": None, "recall": None}
    recall = collection.index_cache.recall()
    return {"index": collection.index_cache.describe(), "recall": None if recall is None else round(recall, 4)}


def _describe(d: dict) -> str:
    index = d["index"]
    probe = f", nlist {index['nlist']}, nprobe {index['nprobe']}" if index["type"] == "ivf" else ""
    recall = "" if d["recall"] is None else f", recall@10 {d['recall']:.3f}"
    return f"index: {index['type']} ({index['factory']}{probe}), {index['vectors']} vectors{recall}"


@click.command("reindex")
@click.option("--type", "index_type", default=None, metavar="auto|flat|ivf|hnsw|FACTORY",
              help="The index to build: auto (Flat while small, then IVF), flat (exact), ivf, hnsw, or a "
                   "FAISS factory string such as 'IVF4096,Flat' [default: LABELER_INDEX, else auto].")
@json_option
def reindex_cmd(index_type: str | None, as_json: bool) -> None:
    """Rebuild the index from the catalog's stored vectors, e.g. to change its type."""
    db.require_catalog(get_config())
    collection = get_collection()
    started = time.monotonic()
    with Progress("reindexing", collection.vectors.count_present(), quiet=as_json) as bar:
        collection.index_cache.rebuild(index_type, progress=bar.update)
    data = {**_index_info(collection), "seconds": round(time.monotonic() - started, 3)}
    emit(as_json, data, lambda d: click.echo(f"{_describe(d)}; rebuilt in {d['seconds']:.1f}s"))


@click.command("stats")
@json_option
def stats_cmd(as_json: bool) -> None:
    """Counts of images, vectors, failures and missing files."""
    db.require_catalog(get_config())  # a read command: a missing home is reported, not created
    from ..store.stats import collection_stats

    data = collection_stats(get_collection())
    emit(as_json, data, lambda d: click.echo("\n".join(f"{k:>9}: {v}" for k, v in d.items())))


COMMANDS = [db_group, index_cmd, ingest_cmd, embed_cmd, check_cmd, reindex_cmd, stats_cmd]
