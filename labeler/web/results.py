"""Library results as the pages and the API show them: ``present``'s dicts with links from ``url_for``."""

from __future__ import annotations

from flask import url_for

from .. import present
from .. import search
from ..collection import Collection
from .requests import search_where


def image_links(image_id: int) -> dict[str, str]:
    """``present``'s links for one image: its thumbnail, full image and detail page."""
    return {"thumb_url": url_for("images.thumb", image_id=image_id),
            "full_url": url_for("images.full", image_id=image_id),
            "detail_url": url_for("review.detail", image_id=image_id)}


def search_hits(collection: Collection, args: dict, similar_to: int | None) -> list[dict]:
    """The hits for ``requests.search_args``' ``args`` (images like ``similar_to`` when given),
    best first, with their labels and links; none when there is nothing to search for."""
    if similar_to is None and not args["q"]:
        return []
    hits = search.find(collection, args["q"], args["k"], search_where(args), args["status"], similar_to)
    with collection.session() as s:
        return present.hit_dicts(s, hits, image_links)
