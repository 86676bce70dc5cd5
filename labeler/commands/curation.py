"""``duplicates`` and ``mark-duplicates``: thin callers of :class:`labeler.api.Labeler`."""

from __future__ import annotations

import click

from .context import Progress, emit, get_labeler, json_option


def _print_groups(report: dict) -> None:
    for group in report["groups"][:50]:
        click.echo(f"group {group['id']} ({len(group['images'])} images, keep {group['keep']}):")
        for image in group["images"]:
            mark = "*" if image["image_id"] == group["keep"] else " "
            click.echo(f"  {mark} {image['image_id']:>7}  {image['similarity']:.4f}  {image['path']}")
    if len(report["groups"]) > 50:
        click.echo(f"... and {len(report['groups']) - 50} more groups (see --json)")
    threshold = report.get("threshold")
    click.echo(f"{len(report['groups'])} {report['level']} groups holding {report['images_in_groups']} images"
               + (f" (cosine >= {threshold:.4f})" if threshold is not None else ""))


@click.command("duplicates")
@click.option("--level", default="near", show_default=True, metavar="exact|near|scene",
              help="exact: the same picture decoded; near: re-encoded, resized, slightly cropped or "
                   "recoloured copies; scene: the same subject and setting, another shot.")
@click.option("--threshold", type=float, default=None,
              help="A cosine to use instead of the calibrated one (no pixel check then).")
@click.option("--recalibrate", is_flag=True, help="Measure the model's thresholds again on new copies.")
@json_option
def duplicates_command(level: str, threshold: float | None, recalibrate: bool, as_json: bool) -> None:
    """Find duplicate groups from the stored vectors and keep them in the catalog."""
    with Progress("searching", None, quiet=as_json) as bar:
        report = get_labeler().duplicates(level, threshold, recalibrate, progress=bar.update, total=bar.set_total)
    emit(as_json, report, _print_groups)


@click.command("mark-duplicates")
@click.argument("group", type=int)
@click.option("--keep", type=int, default=None, metavar="IMAGE_ID",
              help="The image to keep [default: the group's suggestion: largest, then earliest].")
@click.option("--undo", is_flag=True, help="Unmark the group's images instead.")
@json_option
def mark_duplicates_command(group: int, keep: int | None, undo: bool, as_json: bool) -> None:
    """Keep one image of duplicate GROUP and mark the rest: they leave the review queues, label
    skips them and export --exclude-duplicates leaves them out. Nothing is deleted."""
    api = get_labeler()
    if undo:
        emit(as_json, api.unmark_duplicates(group),
             lambda d: click.echo(f"group {d['group']}: {len(d['unmarked'])} images unmarked"))
    else:
        emit(as_json, api.mark_duplicates(group, keep),
             lambda d: click.echo(f"group {d['group']}: kept {d['keep']}, marked {len(d['marked'])} as duplicates"))





@click.command("map")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also draw the map as a PNG here.")
@click.option("--colour", default=None, metavar="GROUP|confidence|status|suspect|duplicates",
              help="What the PNG's colours show [default: the main group's values].")
@click.option("--refit", is_flag=True, help="Fit the layout again (every image may move).")
@click.option("--seed", type=int, default=0, show_default=True, help="The layout's random seed.")
@json_option
def map_command(out: str | None, colour: str | None, refit: bool, seed: int, as_json: bool) -> None:
    """Place every image on a 2-D map of the collection (fitted once; new images are placed
    without moving the old ones), and draw it with --out."""
    api = get_labeler()
    with Progress("placing", None, quiet=as_json) as bar:
        report = api.map(refit=refit, seed=seed, progress=bar.update, total=bar.set_total)
    if out:
        report["picture"] = api.map_picture(out, colour)

    def human(r: dict) -> None:
        click.echo(f"map of {r['images']} images ({r['method']}): "
                   + (f"fitted on {r['anchors']} in {r['fit_seconds']} s" if r["fitted"] else "kept")
                   + f", {r['placed']} placed, {r['seconds']} s")
        if r.get("picture"):
            click.echo(f"wrote {r['picture']['out']} (coloured by {r['picture']['colour']})")

    emit(as_json, report, human)
COMMANDS = [duplicates_command, mark_duplicates_command, map_command]
