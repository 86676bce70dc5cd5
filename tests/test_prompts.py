"""Prompt set files: the shipped sets load, and every kind of mistake is reported precisely."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import yaml

from labeler.core.prompts import PROMPT_SET_DIR, PromptSetError, generic_templates, load_prompt_set


def write(tmp_path: Path, text: str, name: str = "set.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["workshop", "tools", "colors", "materials"])
def test_shipped_prompt_sets_load(name):
    prompt_set = load_prompt_set(PROMPT_SET_DIR / f"{name}.yaml")
    assert prompt_set.groups
    for group in prompt_set.groups.values():
        assert group.options and all(option.prompts for option in group.options)


def test_workshop_options_expand_prompts_then_templates_with_weights():
    prompt_set = load_prompt_set("workshop")  # a bare name finds prompt_sets/workshop.yaml
    concept = prompt_set.groups["concept"]
    assert concept.kind == "concept" and concept.baseline == "a photo of a {name}"
    hammer = concept.option("hammer")
    texts = [p.text for p in hammer.prompts]
    raw = yaml.safe_load((PROMPT_SET_DIR / "workshop.yaml").read_text())["groups"]["concept"]["options"]["hammer"]
    first = raw["prompts"][0]
    assert texts[0] == (first["text"] if isinstance(first, dict) else first)  # its own prompts come first
    assert texts[-2:] == ["a photo of a hammer", "a hammer"]  # the group's templates on the name
    assert {p.text: p.weight for p in hammer.prompts}["a tool for driving nails"] == 2.0
    assert prompt_set.groups["material"].baseline_prompt(prompt_set.groups["material"].option("wood")) \
        == "a photo of something made of wood"
    assert prompt_set.content_hash == hashlib.sha256((PROMPT_SET_DIR / "workshop.yaml").read_bytes()).hexdigest()


def test_templates_most_specific_wins_and_generic_list(tmp_path):
    path = write(tmp_path, """
name: t
version: 2
templates: generic
groups:
  a:
    options:
      cat: []
      dog:
        prompts: ["a good dog"]
        templates: ["{name} running"]
  b:
    templates: ["a {name} thing"]
    none: {name: other, threshold: 0.4}
    options:
      red: {}
      blue: {threshold: 0.6}
""")
    path.write_text(path.read_text().replace("cat: []", "cat:"))
    prompt_set = load_prompt_set(path)
    generic = generic_templates()
    assert [p.text for p in prompt_set.groups["a"].option("cat").prompts] == [t.format(name="cat") for t in generic]
    assert [p.text for p in prompt_set.groups["a"].option("dog").prompts] == ["a good dog", "dog running"]
    b = prompt_set.groups["b"]
    assert [p.text for p in b.option("red").prompts] == ["a red thing"]
    assert (b.none_name, b.none_threshold, b.option("blue").threshold) == ("other", 0.4, 0.6)
    assert prompt_set.version == "2"


def test_every_mistake_is_reported_as_file_key_reason(tmp_path):
    path = write(tmp_path, """
name: bad
version: 1
colour: oops
groups:
  color:
    kind: attribut
    baseline: "a photo"
    none: {name: red, threshold: 1.5}
    options:
      red:
        prompts: []
      blue:
        prompts: ["a blue thing", "a blue thing", {text: "x", weight: -1}, {txt: "y"}]
        templates: ["a {colour} thing", "{name} {name2}"]
      green:
        prompts: ["ok"]
        treshold: 0.5
      yellow: ["a"]
      yellow: ["b"]
  size:
    options: {}
""")
    with pytest.raises(PromptSetError) as info:
        load_prompt_set(path)
    problems = info.value.problems
    where = str(path)
    expected = [
        f"{where}: line 20: duplicate key 'yellow'",
        f"{where}: colour: unknown key",
        f"{where}: groups.color.kind: must be one of concept, attribute",
        f"{where}: groups.color.baseline: bad template 'a photo': it must contain {{name}}",
        f"{where}: groups.color.none.threshold: must be a number between 0 and 1",
        f"{where}: groups.color.options.red.prompts: empty",
        f"{where}: groups.color.options.blue.prompts[2].weight: must be a positive number",
        f"{where}: groups.color.options.blue.prompts[3].txt: unknown key",
        f"{where}: groups.color.options.blue.templates[0]: bad template 'a {{colour}} thing'",
        f"{where}: groups.color.options.blue.templates[1]: bad template '{{name}} {{name2}}': unknown field {{name2}}",
        f"{where}: groups.color.options.green.treshold: unknown key",
        f"{where}: groups.color.none.name: duplicate name 'red', it is also an option",
        f"{where}: groups.size.options: empty",
    ]
    for fragment in expected:
        assert any(p.startswith(fragment) for p in problems), (fragment, problems)
    assert str(info.value) == "; ".join(problems) and "\n" not in str(info.value)  # one line at the CLI


def test_duplicate_prompt_in_an_option_is_reported(tmp_path):
    path = write(tmp_path, "name: d\nversion: 1\ngroups:\n  g:\n    options:\n      a: ['x', 'x']\n")
    with pytest.raises(PromptSetError, match=r"groups\.g\.options\.a\.prompts: duplicate prompt 'x'"):
        load_prompt_set(path)


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "name: s\nversion: 1\ngroups:\n  g:\n    options: [a, b\n  h: 1\n")
    with pytest.raises(PromptSetError) as info:
        load_prompt_set(path)
    message = str(info.value)
    assert message.startswith(f"{path}: line ") and "YAML syntax error" in message
    assert "line 6" in message


def test_missing_file_and_wrong_shape(tmp_path):
    with pytest.raises(PromptSetError, match="no such prompt set file"):
        load_prompt_set(tmp_path / "nope.yaml")
    with pytest.raises(PromptSetError, match="name: required"):
        load_prompt_set(write(tmp_path, "version: 1\ngroups: {g: {options: {a: [x]}}}\n"))
    with pytest.raises(PromptSetError, match="must be a mapping"):
        load_prompt_set(write(tmp_path, "- just\n- a list\n"))


@pytest.mark.parametrize("group, reason", [
    ("    options:\n      a: ['x']\n", "groups.g.options: a group needs at least two options"),
    ("    options:\n      a: [{text: x, weight: .nan}]\n      b: ['y']\n", "weight: must be a positive number"),
    ("    options:\n      a: [{text: x, weight: .inf}]\n      b: ['y']\n", "weight: must be a positive number"),
    ("    templates: ['a {name!x}']\n    options:\n      a: ['x']\n      b: ['y']\n", "bad template"),
    ("    templates: ['a {name:d}']\n    options:\n      a: ['x']\n      b: ['y']\n", "bad template"),
    ("    options:\n      1: ['x']\n      '1': ['y']\n", "duplicate name '1'"),
    ("    options:\n      ? [a, b]\n      : ['x']\n      c: ['y']\n", "YAML"),
])
def test_more_mistakes_are_one_precise_error(tmp_path, group, reason):
    path = write(tmp_path, "name: m\nversion: 1\ngroups:\n  g:\n" + group)
    with pytest.raises(PromptSetError, match=re.escape(reason)):
        load_prompt_set(path)


def test_a_name_means_the_version_the_lab_saved_for_the_cli_too(indexed_collection, indexed_cli):
    """The lab saves into ``<home>/prompt_sets/``; ``label --prompt-set workshop`` must label with that copy."""
    from sqlalchemy import select

    from labeler.labeling import prompt_lab as lab
    from labeler.store.catalog import Label

    home = indexed_collection.config.home
    shipped = load_prompt_set("workshop")
    saved, path, _ = lab.save_version(indexed_collection, "workshop", "concept", "hammer", "2 | a claw hammer\na hammer on a bench")
    assert path == home / "prompt_sets" / "workshop.yaml"
    assert saved.version == str(lab.bump_version(shipped.version))
    assert load_prompt_set("workshop", home=home).content_hash == saved.content_hash
    assert load_prompt_set("workshop").content_hash == shipped.content_hash  # no home: the shipped file
    assert load_prompt_set(PROMPT_SET_DIR / "workshop.yaml", home=home).content_hash == shipped.content_hash
    assert lab.prompt_set_files(home)["workshop"] == path  # the lab offers the same file

    report = indexed_cli.json("label", "--prompt-set", "workshop")
    assert (report["prompt_set"]["version"], report["prompt_set"]["content_hash"]) == (saved.version,
                                                                                        saved.content_hash)
    with indexed_collection.session() as s:
        assert set(s.scalars(select(Label.prompt_set_id))) == {report["prompt_set"]["id"]}
