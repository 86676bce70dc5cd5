"""``demo``: the main job on the embedded defaults: build the demo world, index it, label it, serve it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click

from ..collection import Collection
from ..core.prompts import load_prompt_set
from ..encoding.model_spec import TINY_NAME
from ..errors import user_file
from ..labeling.bulk import label_collection
from .context import Progress, emit, generate_with_progress, get_config, json_option


def _world(out: Path, count: int, seed: int, quiet: bool) -> Path:
    """Generate the demo world once; a rerun with the same count and seed reuses it."""
    marker = out / "world.json"
    wanted = {"count": count, "seed": seed}
    if marker.exists() and json.loads(marker.read_text()) == wanted and (out / "truth.csv").exists():
        return out / "truth.csv"
    truth = generate_with_progress(out, count, seed, size=128, quiet=quiet)
    marker.write_text(json.dumps(wanted))
    return truth


def _share_truth(home: Path, truth: Path) -> None:
    """The prompt lab scores strategies against ``<home>/truth.csv``; for the demo that is the world's."""
    shutil.copyfile(truth, home / "truth.csv")


@click.command("demo")
@click.option("--count", default=2000, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=1, show_default=True, type=int, help="Seed of the demo world.")
@click.option("--prompt-set", default="workshop", show_default=True, help="Prompt set used to label the demo.")
@click.option("--serve/--no-serve", default=True, show_default=True, help="Serve the UI when ready.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@json_option
def demo(count: int, seed: int, prompt_set: str, serve: bool, port: int, as_json: bool) -> None:
    """Build a demo collection under --home with labeler-tiny, label it, and serve the UI."""
    from ..ingest.run import index_paths  # lazy: decoding (PIL) only for the commands that read images
    from ..store.users import create_demo_admin  # lazy: werkzeug's hashing only for account commands

    config = get_config()
    config = config.with_(model=config.model or TINY_NAME)
    collection = Collection(config)
    prompts = load_prompt_set(prompt_set)  # fail on a bad prompt set before any work
    with user_file(config.home):
        truth = _world(config.home / "demo-world", count, seed, as_json)
    with Progress("indexing", count, as_json) as bar:
        report = index_paths(collection, [truth.parent], progress=bar.update)
    with Progress(None, None, as_json) as bar:  # label names its passes (stage)
        labels = label_collection(collection, prompts, progress=bar.update, stage=bar.stage)
    _share_truth(config.home, truth)
    with collection.session() as s:
        account = create_demo_admin(s, config.home)
    summary = {"home": str(config.home), "truth": str(truth), "index": report.to_dict(),
               "label": labels.to_dict(), "user": account, "url": f"http://127.0.0.1:{port}/"}

    def human(d: dict) -> None:
        i = d["index"]
        click.echo(f"demo collection in {d['home']}: {i['files']} files, {i['embedded']} embedded now, "
                   f"{d['label']['labeled']} labels written")
        if d["user"]:
            click.echo(f"log in as '{d['user']['name']}' with password '{d['user']['password']}' "
                       f"(saved in {d['user']['file']})")

    emit(as_json, summary, human)
    if serve:
        from ..web import create_app  # lazy: Flask only for the commands that serve
        from ..web.server import serve as serve_app

        click.echo(f"labeler: serving on http://127.0.0.1:{port}/ (Ctrl+C stops)", err=True)
        serve_app(create_app(config), "127.0.0.1", port)


COMMANDS = [demo]
