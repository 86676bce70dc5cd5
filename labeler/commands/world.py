"""``demo-images``: write a procedurally generated workshop world with its truth.csv."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..world import generate_world


@click.command("demo-images")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--count", default=200, show_default=True, type=click.IntRange(min=0), help="Images to generate.")
@click.option("--seed", default=0, show_default=True, type=int, help="World seed; image i depends only on (seed, i).")
@click.option("--size", default=128, show_default=True, type=click.IntRange(min=32), help="Image side in pixels.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")
def demo_images(out: Path, count: int, seed: int, size: int, as_json: bool) -> None:
    """Generate a workshop world of COUNT labelled images into OUT (with truth.csv)."""
    show_bar = not as_json and sys.stderr.isatty()
    with click.progressbar(length=count, label="generating", file=sys.stderr) if show_bar else _NoBar() as bar:
        done = 0

        def progress(n_done: int) -> None:
            nonlocal done
            bar.update(n_done - done)
            done = n_done

        truth = generate_world(out, count, seed, size=size, progress=progress)
    result = {"count": count, "out": str(out), "truth": str(truth)}
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(f"wrote {count} images and {truth}")


class _NoBar:
    """Stands in for click's bar under --json or when stderr is not a terminal."""

    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        return None


COMMANDS = [demo_images]
