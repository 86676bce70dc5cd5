"""Reading a request's arguments: the one place that turns query strings and JSON fields into
typed values, and a bad one into a 400 with a message that names it."""

from __future__ import annotations

import re
from typing import Any

from flask import abort, request

from ..curation import maps
from ..review import decisions as review, flags
from .. import search
from ..store.catalog import MAX_ID
from ..errors import LabelerError
from ..review.decisions import FILTER_STATUSES
from .context import collection

DEFAULT_K = 48
MAX_K = 500
MAX_PAGE = 1_000_000
MAX_JSON_DEPTH = 32  # our bodies nest 3 deep; far deeper is an attack on the parser
_DIGITS = re.compile(r"[+-]?[0-9]+", re.ASCII)


def _whole_number(value: Any, name: str) -> int:
    """An int, or a string of ASCII digits. A float (1.9) or a bool (true) is a 400, never
    quietly truncated to 1: a client that sends one has a bug it should hear about."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        abort(400, f"{name} must be an integer")
    if isinstance(value, str):
        value = value.strip()
        if not _DIGITS.fullmatch(value):
            abort(400, f"{name} must be an integer")
        if len(value) > 30:  # far past any id, and int() refuses thousands of digits
            abort(400, f"{name} is out of range")
        value = int(value)
    return value


def integer(value: Any, name: str) -> int:
    """``value`` as an integer the database can hold; else a 400."""
    number = _whole_number(value, name)
    if abs(number) > MAX_ID:
        abort(400, f"{name} is out of range")
    return number


def clamped(value: Any, name: str, low: int, high: int) -> int:
    """``value`` as an integer pulled into ``[low, high]``; only a non-number is a 400."""
    return min(high, max(low, _whole_number(value, name)))


def text(value: Any, name: str) -> str | None:
    """A string field, None when empty or absent; anything else (a list, a number) is a 400."""
    if value is not None and not isinstance(value, str):
        abort(400, f"{name} must be a string")
    return value or None


def threshold(value: Any) -> float:
    if isinstance(value, bool):
        abort(400, "threshold must be a number between 0 and 1")
    try:
        number = float(value)
    except (TypeError, ValueError):
        abort(400, "threshold must be a number between 0 and 1")
    if not 0.0 <= number <= 1.0:
        abort(400, "threshold must be a number between 0 and 1")
    return number


def json_body() -> dict:
    """The request's JSON object; a 400 for anything else, for nesting deeper than
    ``MAX_JSON_DEPTH`` and for text that is not valid Unicode (a lone surrogate such as "\\ud800")."""
    try:
        data = request.get_json(silent=True)
    except RecursionError:
        abort(400, f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(data, dict):
        abort(400, "send a JSON object with Content-Type: application/json")
    _check_json(data)
    return data


def _check_json(data: Any) -> None:
    # Iterative: a recursive walk would itself fail on the nesting it is meant to refuse.
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            abort(400, f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(value, dict):
            stack.extend((key, depth) for key in value)
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                abort(400, "the JSON body holds text that is not valid Unicode (a lone surrogate)")


def _parsed(value: str | None, name: str, parse):
    """``parse(value)``, None when empty; a 400 naming ``name`` when ``parse`` refuses it."""
    if not value:
        return None
    try:
        return parse(value)
    except LabelerError as exc:
        abort(400, f"{name}: {exc}")


def _page_key(value: str | None, name: str):
    return _parsed(value, name, review.parse_key)


def queue_filters() -> dict:
    """The review queue's filters and its page keys (``after``/``before``); unknown values are
    user errors (400)."""
    args = request.args
    return {
        "after": _page_key(args.get("after"), "after"),
        "before": _page_key(args.get("before"), "before"),
        "group": args.get("group") or None,
        "value": args.get("value") or None,
        "status": args.get("status", "proposed") or None,
        "sort": args.get("sort", "uncertainty"),
        "page": clamped(args.get("page", 1), "page", 1, MAX_PAGE),  # past the end is an empty page
        "flag": flag_name(args.get("flag")),
        "selection": map_selection(args.get("selection")),
    }


def map_selection(value: Any) -> int | None:
    """A map selection's id (``POST /api/map/select`` made it), None when absent: a 400 when it is
    not a number, a 404 when no such selection was kept."""
    if value is None or value == "":
        return None
    selection = integer(value, "selection")
    with collection().session() as s:
        if maps.selection_size(s, selection) is None:
            abort(404, f"no map selection {selection}")
    return selection


def flag_name(value: str | None) -> str | None:
    """A flag filter: None when absent, else a valid flag name; a 400 naming ``flag`` otherwise."""
    return _parsed(value, "flag", flags.clean_name)


def search_args() -> dict:
    """The search page's and ``/api/search``'s arguments: q, k, group, value, status, similar, where,
    flag and selection (a map selection's images only)."""
    args = request.args
    k = clamped(args.get("k", DEFAULT_K), "k", 1, MAX_K)
    similar = integer(args["similar"], "similar") if args.get("similar") else None
    if similar is not None and similar <= 0:
        abort(400, "similar must be an image id")
    status = args.get("status") or None
    if status and status not in FILTER_STATUSES:
        abort(400, f"unknown status '{status}'; use one of: {', '.join(FILTER_STATUSES)}")
    where_items = [item.strip() for raw in args.getlist("where") for item in raw.split(",") if item.strip()]
    try:
        where = search.parse_where(where_items)
    except LabelerError as exc:
        abort(400, str(exc))
    q = (args.get("q") or "").strip()
    try:
        search.check_query_size(q, collection().config)  # before any of it is parsed or encoded
    except LabelerError as exc:
        abort(400, f"q: {exc}")
    return {"q": q, "k": k, "group": args.get("group") or None, "value": args.get("value") or None,
            "status": status, "similar": similar, "where": where, "flag": flag_name(args.get("flag")),
            "selection": map_selection(args.get("selection"))}


def search_where(args: dict) -> dict[str, str] | None:
    """``where`` plus the ``group`` = ``value`` filter: every one must hold."""
    group, value = args["group"], args["value"]
    if value and not group:
        abort(400, "a value filter needs a group")
    return {**(args["where"] or {}), **({group: value} if group and value else {})} or None
