"""``demo-images``: write a procedurally generated workshop world with its truth.csv."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import user_file
from .context import emit, generate_with_progress, json_option


@click.command("demo-images")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--count", default=200, show_default=True, type=click.IntRange(min=0), help="Images to generate.")
@click.option("--seed", default=0, show_default=True, type=int, help="World seed; image i depends only on (seed, i).")
@click.option("--size", default=128, show_default=True, type=click.IntRange(min=32), help="Image side in pixels.")
@json_option
def demo_images(out: Path, count: int, seed: int, size: int, as_json: bool) -> None:
    """Generate a workshop world of COUNT labelled images into OUT (with truth.csv)."""
    with user_file(out):
        truth = generate_with_progress(out, count, seed, size, as_json)
    emit(as_json, {"count": count, "out": str(out), "truth": str(truth)},
         lambda d: click.echo(f"wrote {d['count']} images and {d['truth']}"))


COMMANDS = [demo_images]
