"""``search`` and ``similar``: thin wrappers over :mod:`labeler.search`."""

from __future__ import annotations

import click

from ..store import db
from ..errors import LabelerError
from .context import emit, get_collection, get_config, json_option

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
    from .. import search
    from ..core.prompts import load_prompt_set

    db.require_catalog(get_config())  # read commands: a missing home is reported, not created
    filters = search.parse_where(where)
    if concept:
        if query:
            raise LabelerError("give a QUERY or --concept, not both")
        if not prompt_set_path:
            raise LabelerError("--concept needs --prompt-set FILE")
        prompt_set = load_prompt_set(prompt_set_path, home=get_config().home)
        hits = search.search_concept(get_collection(), prompt_set, concept, k, filters, status, exact=exact)
    else:
        if not query:
            raise LabelerError("give a QUERY (or --concept OPTION --prompt-set FILE)")
        search.parse_query(query)  # a syntax error is reported before the catalog is opened
        hits = search.search(get_collection(), query, k, filters, status, templates, exact=exact)
    emit(as_json, [h.to_dict() for h in hits], _print_hits)


@click.command("similar")
@click.argument("image", metavar="IMAGE_ID|PATH")
@click.option("-k", "k", default=20, show_default=True, type=click.IntRange(min=1), help="How many hits.")
@where_option
@status_option
@json_option
def similar_command(image: str, k: int, where: tuple[str, ...], status: str | None, as_json: bool) -> None:
    """Images most like IMAGE (a catalog id or a path), best first."""
    from .. import search

    db.require_catalog(get_config())
    hits = search.similar(get_collection(), image, k, search.parse_where(where), status)
    emit(as_json, [h.to_dict() for h in hits], _print_hits)


COMMANDS = [search_command, similar_command]
