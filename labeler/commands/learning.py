"""``learn``: fit each group from its reviews (a thin caller of :meth:`labeler.api.Labeler.learn`)."""

from __future__ import annotations

from pathlib import Path

import click

from .context import Progress, emit, get_labeler, json_option


@click.command("learn")
@click.option("--group", "groups", multiple=True, metavar="G", help="Only these groups (repeatable).")
@click.option("--prompt-set", "prompt_set_path", default=None, metavar="FILE",
              help="Learn for this prompt set [default: the one each group's labels were proposed with].")
@click.option("--write-prompt-set", "write_to", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="OUT.yaml", help="Also write a new version of the prompt set with prompt weights fitted "
                                       "on the reviews (prompts that hurt dropped), for label --prompt-set.")
@json_option
def learn(groups: tuple[str, ...], prompt_set_path: str | None, write_to: Path | None, as_json: bool) -> None:
    """Learn from reviewed labels: per group, a classifier on the stored vectors and a calibrated confidence.

    The next `label` proposes with it; reviewed labels are never changed.
    """
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
