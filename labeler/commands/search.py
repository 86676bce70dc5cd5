"""``search`` and ``similar``: thin callers of :class:`labeler.api.Labeler`."""

from __future__ import annotations

import click

from ..errors import LabelerError
from .context import emit, get_labeler, json_option

where_option = click.option("--where", "where", multiple=True, metavar="GROUP=VALUE",
                            help="Only images labeled so, e.g. concept=hammer (repeatable).")
status_option = click.option("--status", default=None,
                             help="Only images with labels in this review status: proposed, accepted, "
                                  "corrected, rejected or reviewed (any but proposed).")


def _print_hits(hits: list[dict]) -> None:
    if not hits:
        click.echo("no matches")
        return
    click.echo(f"{'#':>3}  {'score':>7}  {'image':>7}  path")
    for rank, hit in enumerate(hits, start=1):
        click.echo(f"{rank:>3}  {hit['score']:>7.4f}  {hit['image_id']:>7}  {hit['path']}")


@click.command("search")
@click.argument("query", required=False)
@click.option("-k", "k", default=20, show_default=True, type=click.IntRange(min=1), help="How many hits.")
@click.option("--templates", is_flag=True, help="Embed the text under the generic templates and average.")
@click.option("--concept", default=None, metavar="[GROUP=]OPTION",
              help="Retrieve an option's top K with its prompt ensemble (needs --prompt-set).")
@click.option("--prompt-set", "prompt_set_path", default=None, metavar="FILE")
@click.option("--exact", is_flag=True, help="Scan every vector (the true top K), e.g. to measure an "
                                           "approximate index's recall.")
@where_option
@status_option
@json_option
def search_command(query: str | None, k: int, templates: bool, concept: str | None, prompt_set_path: str | None,
                   exact: bool, where: tuple[str, ...], status: str | None, as_json: bool) -> None:
    """Search images by QUERY: free text, or terms like '"hammer" - "toy" + image:123' or '0.5*"red" + "hammer"'."""
    api = get_labeler()
    if concept:
        if query:
            raise LabelerError("give a QUERY or --concept, not both")
        if not prompt_set_path:
            raise LabelerError("--concept needs --prompt-set FILE")
        hits = api.search_concept(concept, prompt_set_path, k, where, status, exact=exact)
    else:
        hits = api.search(query, k, where, status, templates, exact=exact)
    _explain_empty(api, hits, where)
    emit(as_json, hits, _print_hits)


def _explain_empty(api, hits: list, where: tuple[str, ...]) -> None:
    """No hits: say on stderr why, where it is something the user can change (an empty collection,
    a filter that names nothing); exit 0 still: no match is an answer."""
    if not hits:
        for note in api.no_hit_notes(where):
            click.echo(f"note: {note}", err=True)


@click.command("similar")
@click.argument("image", metavar="IMAGE_ID|PATH")
@click.option("-k", "k", default=20, show_default=True, type=click.IntRange(min=1), help="How many hits.")
@where_option
@status_option
@json_option
def similar_command(image: str, k: int, where: tuple[str, ...], status: str | None, as_json: bool) -> None:
    """Images most like IMAGE (a catalog id or a path), best first."""
    api = get_labeler()
    hits = api.similar(image, k, where, status)
    _explain_empty(api, hits, where)
    emit(as_json, hits, _print_hits)


COMMANDS = [search_command, similar_command]
