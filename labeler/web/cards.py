"""Review cards: what the queue, the focus mode and the detail page show of a label, as the JSON
``static/review.js`` renders. One builder, so a card looks the same on every page and in the API's
answers to a decision."""

from __future__ import annotations

import json
from datetime import datetime

from dataclasses import dataclass, field

from flask import abort, session, url_for
from markupsafe import Markup

from ..review import flags, leases, preferences, present, qa, decisions as review
from ..store import db
from .context import collection, user_preferences
from ..core import stored_scores
from ..core.scoring import SHOWN_DIGITS
from ..store.catalog import utcnow

# Keys that option shortcuts may take after 1-9: letters no other shortcut of the review pages uses
# (j k a c r s u x f o and the help's ?), in keyboard order.
OPTION_LETTERS = "qwetyipdghlzvbnm"
OTHER_OPTIONS = 2
PAGE_SIZE = 48


def option_keys(options: list[str]) -> dict[str, str]:
    """Each option's one key: 1-9, then ``OPTION_LETTERS``; options past those get none (the
    correction picker still finds them by typing)."""
    keys = [str(n) for n in range(1, 10)] + list(OPTION_LETTERS)
    return {option: key for option, key in zip(options, keys)}


def shortcuts(keys: dict[str, str], names: str | None = None, remap: dict[str, str] | None = None) -> list[dict]:
    """The review pages' one table of keyboard shortcuts, given the option keys (option → key), what
    the help says of them (by default, each key and its option), and the user's own keys (``remap``,
    action → key, as ``review.preferences`` validated them: each replaces its action's first key,
    and the row's label then names the keys it binds).

    It renders the help, and ``static/review.js`` binds its keys: ``bind`` maps KeyboardEvent.key values
    ("Shift+" before a capital letter or an arrow) to an action of review.js. The README's table
    documents the same keys.
    """
    names = names if names is not None else ", ".join(f"{key} {option}" for option, key in keys.items())
    zoom = {"+": "zoomIn", "=": "zoomIn", "-": "zoomOut", "0": "zoomReset", "Shift+ArrowLeft": "panLeft",
            "Shift+ArrowRight": "panRight", "Shift+ArrowUp": "panUp", "Shift+ArrowDown": "panDown"}
    rows = [
        {"label": "j / → , k / ←", "help": "next / previous image",
         "bind": {"j": "next", "ArrowRight": "next", "k": "previous", "ArrowLeft": "previous"}},
        {"label": "a", "help": "accept the proposed value", "bind": {"a": "accept"}},
        {"label": "1–9, then letters", "help": "correct to that option at once", "detail": names,
         "bind": {key: "option" for key in keys.values()}},
        {"label": "c", "help": "correct: type to filter the options, or type a new value", "bind": {"c": "correct"}},
        {"label": "r", "help": "reject: none of these", "bind": {"r": "reject"}},
        {"label": "s", "help": "skip: to the end of your queue", "bind": {"s": "skip"}},
        {"label": "u", "help": "undo your last decision (a bulk accept as one), on any page", "bind": {"u": "undo"}},
        {"label": "Shift+H", "help": "your last 50 decisions, each with its undo", "bind": {"Shift+H": "history"}},
        {"label": "Shift+G", "help": "group the page's cards by proposed value (the odd one out stands out)",
         "bind": {"Shift+G": "groupByValue"}},
        {"label": "f", "help": "focus mode: one large image (Esc leaves)", "bind": {"f": "focus"}},
        {"label": "+ / − / 0", "help": "zoom in / out / fit in focus mode (Shift+arrows pan)", "bind": zoom},
        {"label": "] / [", "help": "next / previous page", "bind": {"]": "nextPage", "[": "previousPage"}},
        {"label": "x", "help": "select / unselect", "bind": {"x": "select"}},
        {"label": "Shift+J / Shift+K, Shift+click", "help": "select a range: this card and the next / previous",
         "bind": {"Shift+J": "selectNext", "Shift+K": "selectPrevious"}},
        {"label": "Shift+X, Shift+I", "help": "select every card on the page (again: none) / invert the selection",
         "bind": {"Shift+X": "selectAll", "Shift+I": "invertSelection"}},
        {"label": "! , Shift+B", "help": "flag the label ambiguous / flag the image bad image (notes: detail page)",
         "bind": {"!": "flagAmbiguous", "Shift+B": "flagBadImage"}},
        {"label": "Shift+A", "help": "accept the selected images", "bind": {"Shift+A": "acceptSelected"}},
        {"label": "Shift+T", "help": "accept all above the threshold: a preview of exactly those, Enter accepts them",
         "bind": {"Shift+T": "acceptAbove"}},
        {"label": "Enter, o", "help": "open the image's detail page (Enter on a card)", "bind": {"Enter": "open", "o": "open"}},
        {"label": "?", "help": "show / hide this help", "bind": {"?": "help"}},
    ]
    return [_remapped(row, remap) for row in rows] if remap else rows


def _remapped(row: dict, remap: dict[str, str]) -> dict:
    if not any(action in remap for action in row["bind"].values()) or set(row["bind"].values()) == {"option"}:
        return row
    bind: dict[str, str] = {}
    replaced: set[str] = set()
    for key, action in row["bind"].items():
        if action in remap and action not in replaced:
            key = remap[action]
            replaced.add(action)
        bind[key] = action
    by_action: dict[str, list[str]] = {}
    for key, action in bind.items():
        by_action.setdefault(action, []).append(key)
    return {**row, "label": " , ".join(" / ".join(keys) for keys in by_action.values()), "bind": bind}


def key_defaults() -> dict[str, list[str]]:
    """Each remappable action and its default keys, first the one a user's own key replaces: every
    action of the shortcut table but the options' (their keys are ``option_keys``)."""
    out: dict[str, list[str]] = {}
    for row in shortcuts({}):
        for key, action in row["bind"].items():
            out.setdefault(action, []).append(key)
    return out


def fixed_keys() -> dict[str, str]:
    """The option keys, which no action may take."""
    return {key: f"option key {key} (correct to an option)" for key in [str(n) for n in range(1, 10)] + list(OPTION_LETTERS)}


def key_of(action: str) -> str:
    """The key the user presses for ``action``: their own, else the table's first."""
    return preferences.effective_keys(key_defaults(), user_preferences()["keys"]).get(action, [""])[0]


def all_option_keys(group_options: dict[str, list[str]]) -> dict[str, str]:
    """Every key some group's option takes, as ``shortcuts`` wants them (each key once)."""
    keys = {key for options in group_options.values() for key in option_keys(options).values()}
    return {key: key for key in sorted(keys, key=lambda k: (not k.isdigit(), OPTION_LETTERS.find(k), k))}


def card(label, name: str) -> dict:
    """What a review card shows of a label, compactly: the queue page carries 48 of these as JSON.

    ``others`` is the model's best options but the card's value, ``[option, confidence]``, best
    first; ``predicted`` is left out when it is the value. ``confidence`` is the model's confidence
    in the value shown: after a correction, the corrected value's own (None for a value the model
    never scored), not the confidence of the proposal it replaced. Confidences keep the 2
    decimals the page shows.
    """
    shown = present.label_dict(label)
    scores = {option: score.get("confidence") for option, score in (shown["scores"] or {}).items()
              if isinstance(score, dict) and score.get("confidence") is not None}
    ranked = sorted(((option, confidence) for option, confidence in scores.items() if option != shown["value"]),
                    key=lambda pair: -pair[1])
    confidence = shown["value_confidence"]
    out = {"id": shown["id"], "version": shown["version"], "image_id": shown["image_id"], "name": name,
           "group": shown["group"], "value": shown["value"], "status": shown["status"],
           "confidence": None if confidence is None else round(confidence, SHOWN_DIGITS),
           "others": [[option, round(confidence, SHOWN_DIGITS)] for option, confidence in ranked[:OTHER_OPTIONS]]}
    if shown["predicted"] != shown["value"]:
        out["predicted"] = shown["predicted"]
    return out


def cards(session, labels) -> list[dict]:
    """The cards of ``labels``, each named by its image's file name; ``flags`` (names) when the
    label or its image carries any."""
    names = review.image_names(session, [label.image_id for label in labels])
    marked = flags.of_images(session, [label.image_id for label in labels])
    out = []
    for label in labels:
        shown = card(label, names.get(label.image_id, f"image {label.image_id}"))
        on = sorted({f["name"] for f in marked.get(label.image_id, []) if f["label_id"] in (None, label.id)})
        if on:
            shown["flags"] = on
        out.append(shown)
    return out


def page_data(group_options: dict[str, list[str]], cards: list[dict], **extra) -> dict:
    """The JSON a review page hands ``static/review.js``: cards, each group's options and their keys,
    the shortcut table's bindings and the image URLs (with 0 where the image id goes)."""
    keys = {group: option_keys(options) for group, options in group_options.items()}
    prefs = user_preferences()
    return {"cards": cards, "options": group_options, "keys": keys, "density": prefs["density"],
            "shortcuts": [row["bind"] for row in shortcuts(all_option_keys(group_options), remap=prefs["keys"])],
            "thumb": url_for("images.thumb", image_id=0), "full": url_for("images.view", image_id=0),
            "detail": url_for("review.detail", image_id=0), **extra}


def script_json(data) -> Markup:
    """``data`` as compact JSON safe inside a ``<script>`` element (Jinja's ``tojson`` adds a space
    after every comma and colon: 2 KB on a queue page)."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("'", "\\u0027")):
        text = text.replace(char, escaped)
    return Markup(text)


def review_started() -> datetime:
    """When this login session started reviewing: its decisions per minute count from there."""
    started = session.get("review_since")
    try:
        return datetime.fromisoformat(started)
    except (TypeError, ValueError):
        now = utcnow()
        session["review_since"] = now.isoformat()
        return now




@dataclass
class Batch:
    """One page of a review queue as cards, with the links to the pages before and after it."""

    cards: list[dict]
    total: int
    total_capped: bool  # more than ``total`` match: the count stopped at decisions.COUNT_CAP
    options: list[str]  # the group's options in the prompt set's order, as the labels were scored
    next: str | None
    previous: str | None
    claimed: list[int] = field(default_factory=list)  # the labels this batch's claim holds (page + next batch)
    claimed_at: str | None = None  # when it claimed them: a release by this page stops at its own claims


def queue_batch(s, filters: dict, user_id: int) -> Batch:
    """The queue page ``filters`` (``requests.queue_filters``) ask for, as the reviewer sees it.

    A proposed queue claims what it shows plus the next batch (``leases``), and shows only labels
    the claim got: another reviewer's queue, loading at the same moment, gets other ones.
    """
    team = filters["status"] == "proposed"
    try:
        result = review.queue_page(s, filters["group"], filters["value"], filters["status"], filters["sort"],
                                   PAGE_SIZE * (2 if team else 1), user_id, filters["after"], filters["before"],
                                   filters["flag"], filters.get("selection"))
    except review.ReviewError as exc:
        abort(400, str(exc))
    claimed: set[int] = set()
    stamp = utcnow()
    if team and result.labels:
        result, claimed = _claimed(s, result, user_id, filters["before"] is not None, stamp)
    shown = cards(s, result.labels)
    for shown_card in shown:
        del shown_card["group"]  # the page's, said once
    link = {"group": filters["group"], "value": filters["value"] or "", "status": filters["status"] or "",
            "sort": filters["sort"], **({"flag": filters["flag"]} if filters["flag"] else {}),
            **({"selection": filters["selection"]} if filters.get("selection") else {})}
    return Batch(
        cards=shown, total=result.total, total_capped=result.total_capped,
        # The prompt set's own order, so the option keys match what the labeler offered.
        options=next((names for label in result.labels
                      if (names := stored_scores.option_names(label.prompt_set, label.group))), []),
        next=url_for("review.queue", **link, after=review.format_key(result.last), page=filters["page"] + 1)
        if result.more_after and result.last else None,
        previous=url_for("review.queue", **link, before=review.format_key(result.first),
                         page=max(1, filters["page"] - 1)) if result.more_before and result.first else None,
        claimed=sorted(claimed), claimed_at=stamp.isoformat() if claimed else None)


def _claimed(s, result: review.QueuePage, user_id: int, backwards: bool,
             now: datetime) -> tuple[review.QueuePage, set[int]]:
    """The page cut to the ``PAGE_SIZE`` labels the reviewer's claim got, nearest the page's start
    (nearest its end when paging back), and the claim; the rest of the claim is the next batch. The
    reviewer's own skips are shown (last) but not claimed: a skip hands the card to whoever wants it."""
    skipped = review.skipped(s, user_id, [label.id for label in result.labels])
    claimed = db.write_transaction(collection().config, lambda w: leases.claim(
        w, user_id, [label.id for label in result.labels if label.id not in skipped], now))
    kept = [i for i, label in enumerate(result.labels) if label.id in claimed or label.id in skipped]
    kept = kept[-PAGE_SIZE:] if backwards else kept[:PAGE_SIZE]
    if not kept:
        return review.QueuePage([], result.total, None, None, result.more_before, result.more_after, [],
                                result.total_capped), claimed
    cut_after = kept[-1] < len(result.labels) - 1
    cut_before = kept[0] > 0
    return review.QueuePage(
        labels=[result.labels[i] for i in kept], total=result.total, first=result.keys[kept[0]],
        last=result.keys[kept[-1]], more_before=result.more_before or (backwards and cut_before),
        more_after=result.more_after or cut_after, keys=[result.keys[i] for i in kept],
        total_capped=result.total_capped), claimed


def qa_cards(s, tasks) -> list[dict]:
    """Open QA tasks as the QA reviewer sees them, blind: each task, its card without what the model
    or the first reviewer said, the group's options and each option's key (the queue's keys)."""
    names = qa.user_names(s)
    labels = review.labels_by_id(s, [t.label_id for t in tasks])
    shown = {c["id"]: c for c in cards(s, labels)}
    options: dict[str, list[str]] = {}
    out = []
    for task in tasks:
        card = dict(shown[task.label_id])
        for first_answer in ("value", "status", "predicted", "confidence", "others"):
            card.pop(first_answer, None)  # blind: what the model or the reviewer said stays hidden
        if task.group not in options:
            options[task.group] = review.options(s, task.group)
        out.append({**qa.task_dict(task, names, blind=True), "card": card, "options": options[task.group],
                    "keys": option_keys(options[task.group])})
    return out
