"""Library results as the pages and the API show them: ``present``'s dicts with links from ``url_for``."""

from __future__ import annotations

from flask import g, url_for

from ..review import present
from .. import search
from ..collection import Collection
from .requests import search_where


_LINKS = {"thumb_url": "images.thumb", "full_url": "images.full", "detail_url": "review.detail"}
_MARK = 987654321987  # an id no route holds otherwise, split out of each built URL


def _link_parts() -> list[tuple[str, str, str]]:
    """Each link's (name, before the id, after the id), built once per request: a page of 500 hits
    would otherwise pay 1,500 ``url_for`` calls (a third of a search's time)."""
    parts = g.get("_image_link_parts")
    if parts is None:
        parts = g._image_link_parts = [(name, *url_for(endpoint, image_id=_MARK).split(str(_MARK), 1))
                                       for name, endpoint in _LINKS.items()]
    return parts


def image_links(image_id: int) -> dict[str, str]:
    """``present``'s links for one image: its thumbnail, full image and detail page."""
    return {name: f"{before}{int(image_id)}{after}" for name, before, after in _link_parts()}


def search_hits(collection: Collection, args: dict, similar_to: int | None) -> list[dict]:
    """The hits for ``requests.search_args``' ``args`` (images like ``similar_to`` when given),
    best first, with their labels and links; none when there is nothing to search for."""
    if similar_to is None and not args["q"]:
        return []
    hits = search.find(collection, args["q"], args["k"], search_where(args), args["status"], similar_to,
                       args.get("flag"), args.get("selection"))
    with collection.session() as s:
        return present.hit_dicts(s, hits, image_links)
