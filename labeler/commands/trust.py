"""``accept``, ``sample`` and ``audit``: trusted labels (thin callers of the API's ``Labeler.accept``,
``undo_accept``, ``accept_runs``, ``sample`` and ``audit``)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import click

from ..errors import LabelerError
from ..review.trust import AcceptRefused, check_target
from .context import Progress, emit, get_labeler, json_option


@click.command("accept")
@click.option("--group", default=None, metavar="G", help="The group whose proposals to accept.")
@click.option("--min-precision", type=float, default=None, metavar="P",
              help="Accept the largest set whose precision has a 95% lower bound of at least P (0.5 < P < 1).")
@click.option("--dry-run", is_flag=True, help="Say what would be accepted; change nothing.")
@click.option("--undo", "undo_run", type=int, default=None, metavar="RUN",
              help="Return run RUN's auto labels to proposed (labels a person decided since stay theirs).")
@click.option("--runs", "list_runs", is_flag=True, help="List the accept runs (of --group) with their spot-checks.")
@click.option("--run", "run_id", type=int, default=None, metavar="RUN", help="Show one run with its spot-checks.")
@json_option
def accept(group: str | None, min_precision: float | None, dry_run: bool, undo_run: int | None, list_runs: bool,
           run_id: int | None, as_json: bool) -> None:
    """Accept a group's proposals automatically at a stated precision, estimated from random reviews.

    The labels get the status `auto` and the run's number; nothing a person decided is changed.
    Refuses (exit 2) when the reviews cannot support the precision, saying how many more it needs.
    """
    api = get_labeler()
    if undo_run is not None:
        with Progress("undoing", None, as_json) as bar:
            result = api.undo_accept(undo_run, progress=_follow(bar))
        emit(as_json, result, lambda d: click.echo(
            f"run {d['run']} ({d['group']}): {d['returned']} labels back to proposed, "
            f"{d['kept']} decided by people since kept"))
        return
    if list_runs or run_id is not None:
        found = api.accept_runs(group, run_id)
        data = found[0] if run_id is not None else found
        emit(as_json, data, lambda _: [click.echo(_run_line(r)) for r in found])
        return
    if group is None or min_precision is None:
        raise LabelerError("accept needs --group G and --min-precision P (or --undo RUN, --runs, --run RUN)")
    check_target(min_precision)
    try:
        with Progress("accepting", None, as_json) as bar:
            result = api.accept(group, min_precision, dry_run=dry_run, progress=_follow(bar))
    except AcceptRefused as exc:
        if as_json:
            emit(True, exc.report)
        raise

    def human(d: dict) -> None:
        verb = "would accept" if d["run"] is None else f"run {d['run']}: accepted"
        click.echo(f"{d['group']}: {verb} {d['accepted']} labels ({d['coverage']:.1%} of the unreviewed) at "
                   f"confidence >= {d['threshold']:.4f}; precision estimated {d['estimated_precision']:.4f}, "
                   f"95% lower bound {d['lower_bound']:.4f} ({d['random_reviews']} random reviews)")

    emit(as_json, result, human)


def _follow(bar: Progress) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback that moves ``bar``."""
    shown = 0

    def progress(done: int, total: int) -> None:
        nonlocal shown
        bar.set_total(total)
        bar.update(done - shown)
        shown = done

    return progress


def _run_line(r: dict) -> str:
    spot = r["spot_checks"]
    checks = (f", spot-checked {spot['checked']}: {spot['verified_precision']:.3f} "
              f"[{spot['lower_bound']:.3f}, {spot['upper_bound']:.3f}]" if spot["checked"] else ", no spot-checks yet")
    flag = "  BELOW ITS CLAIM" if spot["below_claim"] else ""
    undone = f", undone {r['undone_at']}" if r["undone_at"] else ""
    return (f"run {r['run']} {r['group']}: {r['accepted']} accepted at >= {r['threshold']:.4f}, stated "
            f"{r['lower_bound']:.4f}{checks}{undone}{flag}")


@click.command("sample")
@click.option("--group", required=True, metavar="G", help="The group to sample.")
@click.option("--count", required=True, type=int, metavar="N", help="How many labels.")
@click.option("--seed", type=int, default=None, help="Random seed [default: a fresh one, printed].")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.csv")
@json_option
def sample(group: str, count: int, seed: int | None, out: Path, as_json: bool) -> None:
    """Write N random proposed labels of a group to a CSV to review and import (the reviews accept trusts)."""
    result = get_labeler().sample(group, count, out, seed)
    emit(as_json, result, lambda d: click.echo(
        f"wrote {d['count']} random '{d['group']}' labels to {d['out']} (seed {d['seed']}); fill in the "
        f"'{d['group']}' column, then: manage.py import-labels {d['out']}"))


@click.command("audit")
@click.option("--group", default=None, metavar="G", help="Only this group [default: every group with reviews].")
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True, help="Suspects listed per group.")
@json_option
def audit(group: str | None, limit: int, as_json: bool) -> None:
    """Find reviewed or imported labels that are probably wrong (confident learning), most suspect first.

    Scores are kept for the queue's `suspect` sort.
    """
    reports = get_labeler().audit(group, limit)

    def human(_) -> None:
        for r in reports:
            click.echo(f"{r['group']}: {r['flagged']} of {r['audited']} reviewed labels probably wrong "
                       f"(score >= {r['cutoff']:.3f})")
            for x in r["suspects"]:
                if x["score"] < r["cutoff"]:
                    break
                click.echo(f"  {x['score']:.3f}  {x['path']}  {x['value']!r} -> {x['suggested']!r}  "
                           f"({x['reviewed_by'] or 'unknown'})")

    emit(as_json, reports[0] if group is not None else reports, human)


COMMANDS = [accept, sample, audit]
