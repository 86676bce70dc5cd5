"""``learn``: fit each group from its reviews (a thin caller of :meth:`labeler.api.Labeler.learn`)."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import LabelerError
from .context import Progress, emit, get_labeler, json_option


@click.command("learn")
@click.option("--group", "groups", multiple=True, metavar="G", help="Only these groups (repeatable).")
@click.option("--prompt-set", "prompt_set_path", default=None, metavar="FILE",
              help="Learn for this prompt set [default: the one each group's labels were proposed with].")
@click.option("--write-prompt-set", "write_to", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="OUT.yaml", help="Also write a new version of the prompt set with prompt weights fitted "
                                       "on the reviews (prompts that hurt dropped), for label --prompt-set.")
@click.option("--search-prompts", is_flag=True,
              help="Instead of fitting, search each option's prompts among candidates (every group's prompts, "
                   "templates filled with option names, --candidates) by cross-validated accuracy on the "
                   "reviews, and write them to --write-prompt-set as plain text.")
@click.option("--candidates", "candidates", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="With --search-prompts: more candidate prompts, one per line or a YAML list.")
@click.option("--force", is_flag=True, help="With --search-prompts: replace OUT.yaml if it exists.")
@json_option
def learn(groups: tuple[str, ...], prompt_set_path: str | None, write_to: Path | None, search_prompts: bool,
          candidates: Path | None, force: bool, as_json: bool) -> None:
    """Learn from reviewed labels: per group, a classifier on the stored vectors and a calibrated confidence.

    The next `label` proposes with it; reviewed labels are never changed. With --search-prompts,
    find readable prompts from the reviews instead and write them as a new prompt set.
    """
    if (candidates is not None or force) and not search_prompts:
        raise LabelerError("--candidates and --force go with --search-prompts")
    if search_prompts:
        _search(groups, prompt_set_path, write_to, candidates, force, as_json)
        return
    with Progress("learning", len(groups) or None, as_json) as bar:
        report = get_labeler().learn(groups or None, prompt_set_path, write_to, progress=bar.update)

    def human(data: dict) -> None:
        for group, r in data.items():
            cv = r.get("cv_accuracy") or {}
            line = f"{group:<14} {r['reviewed']:>5} reviews  {r['method']:<9}"
            if cv.get("zero_shot") is not None:
                line += f" cv accuracy {cv['zero_shot']:.3f} -> {cv['learned']:.3f}"
                line += f", temperature {r['temperature']:.2f}, ECE {r['ece']['before']:.3f} -> {r['ece']['after']:.3f}"
            click.echo(line)
            if r.get("note"):
                click.echo(f"{'':<15}{r['note']}")
        if write_to is not None:
            click.echo(f"wrote {write_to}; label with: manage.py label --prompt-set {write_to}")

    emit(as_json, report, human)


COMMANDS = [learn]


def _search(groups: tuple[str, ...], prompt_set_path: str | None, out: Path | None, candidates: Path | None,
            force: bool, as_json: bool) -> None:
    if out is None:
        raise LabelerError("--search-prompts needs --write-prompt-set OUT.yaml: the prompts found are written there")
    with Progress("searching prompts", len(groups) or None, as_json) as bar:
        report = get_labeler().search_prompts(out, groups or None, prompt_set_path, candidates, force,
                                              progress=bar.update)

    def human(data: dict) -> None:
        click.echo(f"{data['candidates']} candidate prompts")
        for group, r in data["groups"].items():
            cv = r["cv_accuracy"]
            click.echo(f"{group:<14} {r['reviews']:>5} reviews  cv accuracy {cv['before']:.3f} -> {cv['after']:.3f}  "
                       + ("adopted" if r["adopted"] else "kept the prompt set's"))
            if r["adopted"]:
                for option, o in r["options"].items():
                    click.echo(f"{'':<15}{option}: " + "; ".join(o["prompts"]))
            if r.get("note"):
                click.echo(f"{'':<15}{r['note']}")
        click.echo(f"wrote {data['path']}; label with: manage.py label --prompt-set {data['path']} "
                   "--strategy mean-embedding")

    emit(as_json, report, human)
