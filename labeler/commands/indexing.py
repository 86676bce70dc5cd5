"""Building and keeping a collection: db upgrade, index, ingest, embed, check, stats."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..store import db
from ..config import ENGINES
from ..errors import LabelerError
from ..encoding.encoder import MODE_SETTINGS
from .context import Progress, emit, get_config, get_labeler, json_option

if TYPE_CHECKING:
    from ..api import Labeler


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


def _with_mode(mode: str | None, as_json: bool, **settings) -> Labeler:
    """The API, in encoder ``mode`` when given (and with ``settings``); a first ONNX export
    says what it does."""
    return get_labeler(quiet=as_json, encoder_mode=mode, **settings)


mode_option = click.option("--mode", type=click.Choice(MODE_SETTINGS), default=None,
                           help="Encoder mode [env LABELER_ENCODER_MODE; default: the collection's, else auto]: "
                                "fp32 (ONNX Runtime), int8 (faster, cosine >= 0.99, kept apart; refused on a CPU where it "
                                "cannot keep that), torch; auto: int8 where it is faithful and its labels agree with "
                                "fp32's at 99.5% on this CPU kind, else fp32.")


def _run_index(paths: tuple[Path, ...], embed: bool, as_json: bool, mode: str | None = None,
               engine: str | None = None, address: str | None = None) -> None:
    engine = engine or ("ray" if address else None)  # --address alone means the ray engine
    engine_settings = {"engine": engine, "engine_address": address} if engine else {}
    api = _with_mode(mode, as_json, **engine_settings)
    label = "indexing" if embed else "ingesting"
    with Progress(label, None, quiet=as_json) as bar:
        run = api.index if embed else api.ingest
        report = run(list(paths), progress=bar.update, total=bar.set_total)
    emit(as_json, report, _print_index)


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
    with Progress("embedding", None, quiet=as_json) as bar:
        report = _with_mode(mode, as_json).embed(progress=bar.update, total=bar.set_total)
    emit(as_json, report,
         lambda d: click.echo(f"{d['embedded']} embedded with {d['model']}"))


@click.command("check")
@click.option("--repair", is_flag=True, help="Rebuild the index from the catalog's stored vectors.")
@click.option("--full", is_flag=True, help="SQLite's integrity_check (every index against its table), "
                                           "not only quick_check.")
@json_option
def check_cmd(repair: bool, full: bool, as_json: bool) -> None:
    """Verify the catalog's pages (SQLite quick_check), that the index ids equal the catalog's
    embedded ids and that a sample of its vectors equals the stored ones (cosine); report its
    type and measured recall@10."""
    data = get_labeler().check(repair, full)

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
    if data["problems"]:
        click.get_current_context().exit(1)  # the report above says why; no error line


def _describe(d: dict) -> str:
    index = d["index"]
    probe = f", nlist {index['nlist']}, nprobe {index['nprobe']}" if index["type"] == "ivf" else ""
    recall = "" if d["recall"] is None else f", recall@10 {d['recall']:.3f}"
    return f"index: {index['type']} ({index['factory']}{probe}), {index['vectors']} vectors{recall}"


def _index_type(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--type`` checked before any work: a wrong one is bad input (exit 2), as a bad choice is."""
    if value is not None:
        from ..vectors.index import check_factory  # lazy: FAISS only for the commands that use it

        try:
            check_factory(value)
        except LabelerError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


@click.command("reindex")
@click.option("--type", "index_type", default=None, metavar="auto|flat|ivf|hnsw|FACTORY", callback=_index_type,
              help="The index to build: auto (Flat while small, then IVF), flat (exact), ivf, hnsw, or a "
                   "FAISS factory string such as 'IVF4096,Flat' [default: LABELER_INDEX, else auto].")
@json_option
def reindex_cmd(index_type: str | None, as_json: bool) -> None:
    """Rebuild the index from the catalog's stored vectors, e.g. to change its type."""
    with Progress("reindexing", None, quiet=as_json) as bar:
        data = get_labeler().reindex(index_type, progress=bar.update, total=bar.set_total)
    emit(as_json, data, lambda d: click.echo(f"{_describe(d)}; rebuilt in {d['seconds']:.1f}s"))


@click.command("stats")
@json_option
def stats_cmd(as_json: bool) -> None:
    """Counts of images, vectors, failures and missing files."""
    data = get_labeler().stats()
    emit(as_json, data, lambda d: click.echo("\n".join(
        f"{k:>9}: {backend_line(v) if k == 'backend' and v else v}" for k, v in d.items())))


def backend_line(backend: dict) -> str:
    """One line for people, e.g. 'onnxruntime int8 on the CPU (avx2, 2 threads), recipe s8-reduced, min cosine 0.9999'."""
    text = f"{backend['runtime']} {backend['precision']} on the {backend['device'].upper()}"
    if backend.get("cpu"):
        text += f" ({backend['cpu']}, {backend['threads']} threads)"
    if "recipe" in backend:
        text += f", recipe {backend['recipe'] or 'none (int8 refused here: use fp32)'}"
        if "min_cosine" in backend:
            text += f", min cosine {backend['min_cosine']} to fp32, label agreement {backend['label_agreement']:.1%}"
    return text


COMMANDS = [db_group, index_cmd, ingest_cmd, embed_cmd, check_cmd, reindex_cmd, stats_cmd]
