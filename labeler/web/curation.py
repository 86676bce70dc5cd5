"""Curation pages and API: duplicate groups side by side, keep one and mark the rest.

    GET  /duplicates?level&after             the page (works without JavaScript: one form per group)
    POST /duplicates/<group>/mark            form: keep=IMAGE_ID; then back to the page
    POST /duplicates/<group>/unmark          undo the group's marks
    GET  /api/duplicates?level&limit&after   the stored groups, each image with ``duplicate_of``
    POST /api/duplicates/<group>/mark        {"keep"?}  → {"group", "keep", "marked"}
    POST /api/duplicates/<group>/unmark      → {"group", "unmarked"}

Marks are review decisions (``labeler.review.duplicate_marks``): any reviewer may make and undo them.
"""

from __future__ import annotations

from flask import Blueprint, flash, g, jsonify, redirect, render_template, request, url_for

from ..curation.duplicates import LEVELS, check_level, listed_groups
from ..review import duplicate_marks
from .context import collection
from .requests import integer, json_body
from .results import image_links

bp = Blueprint("curation", __name__)
PAGE_GROUPS = 20


def _level() -> str:
    return check_level(request.args.get("level") or "near")  # unknown: a 400 naming the field


def _groups(level: str, limit: int, after: int) -> dict:
    with collection().session() as s:
        report = listed_groups(s, collection(), level, limit, after)
    for group in report["groups"]:
        for image in group["images"]:
            image.update(image_links(image["image_id"]))
    return report


@bp.route("/duplicates")
def page():
    level = _level()
    after = max(0, integer(request.args.get("after", 0), "after"))
    report = _groups(level, PAGE_GROUPS, after)
    return render_template("curation/duplicates.html", report=report, level=level, levels=LEVELS, after=after)


def _back(level: str, after: int):
    return redirect(url_for("curation.page", level=level, after=after or None))


@bp.route("/duplicates/<int:group_id>/mark", methods=("POST",))
def mark(group_id: int):
    keep = request.form.get("keep")
    with collection().session() as s:
        done = duplicate_marks.mark_group(s, group_id, integer(keep, "keep") if keep else None, g.user.id)
    flash(f"Group {group_id}: kept image {done['keep']}, marked {len(done['marked'])} as duplicates.")
    return _back(request.form.get("level", "near"), integer(request.form.get("after", 0), "after"))


@bp.route("/duplicates/<int:group_id>/unmark", methods=("POST",))
def unmark(group_id: int):
    with collection().session() as s:
        done = duplicate_marks.unmark_group(s, group_id, g.user.id)
    flash(f"Group {group_id}: {len(done['unmarked'])} images unmarked.")
    return _back(request.form.get("level", "near"), integer(request.form.get("after", 0), "after"))


@bp.route("/api/duplicates")
def api_groups():
    limit = min(500, max(1, integer(request.args.get("limit", 100), "limit")))
    after = max(0, integer(request.args.get("after", 0), "after"))
    return jsonify(_groups(_level(), limit, after))


@bp.route("/api/duplicates/<int:group_id>/mark", methods=("POST",))
def api_mark(group_id: int):
    body = json_body()
    keep = body.get("keep")
    with collection().session() as s:
        return jsonify(duplicate_marks.mark_group(s, group_id, integer(keep, "keep") if keep is not None else None,
                                                  g.user.id))


@bp.route("/api/duplicates/<int:group_id>/unmark", methods=("POST",))
def api_unmark(group_id: int):
    with collection().session() as s:
        return jsonify(duplicate_marks.unmark_group(s, group_id, g.user.id))
