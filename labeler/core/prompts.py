"""Prompt sets: YAML files that describe groups of options, each option an ensemble of prompts.

The format is documented in ``prompt_sets/README.md``. :func:`load_prompt_set` validates the
whole file before anything uses it and reports every mistake as ``file: key: reason``.
"""

from __future__ import annotations

import hashlib
import math
import string
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import LabelerError, user_file
from ..resources import resource_dir

PROMPT_SET_DIR = resource_dir("prompt_sets")
GENERIC_TEMPLATES_FILE = PROMPT_SET_DIR / "templates.yaml"
GENERIC = "generic"
DEFAULT_BASELINE = "a photo of a {name}"
KINDS = ("concept", "attribute")

SET_KEYS = {"name", "version", "description", "templates", "groups"}
GROUP_KEYS = {"kind", "baseline", "templates", "none", "options", "description"}
OPTION_KEYS = {"prompts", "templates", "threshold", "description"}
PROMPT_KEYS = {"text", "weight"}
NONE_KEYS = {"name", "threshold"}

# A prompt set is a few kilobytes written by a person; these bound what a bad file can cost.
MAX_BYTES = 1_000_000
MAX_DEPTH = 32  # a valid set nests 7 deep (set > groups > group > options > option > prompts > prompt)


class PromptSetError(LabelerError):
    """A prompt set that cannot be used; ``problems`` holds every ``file: key: reason``.

    The message joins them with "; " so the CLI still prints one line.
    """

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class Prompt:
    text: str
    weight: float = 1.0


@dataclass(frozen=True)
class Option:
    """One answer of a group; ``prompts`` are its explicit prompts plus its expanded templates."""

    name: str
    prompts: tuple[Prompt, ...]
    threshold: float | None = None  # below this confidence the answer is the group's none


@dataclass(frozen=True)
class Group:
    name: str
    kind: str
    baseline: str  # the 'single' strategy's plain prompt, a template on the option name
    options: tuple[Option, ...]
    none_name: str | None = None  # the "none of these" answer, when the group has one
    none_threshold: float | None = None

    @property
    def option_names(self) -> list[str]:
        return [o.name for o in self.options]

    def option(self, name: str) -> Option:
        for option in self.options:
            if option.name == name:
                return option
        raise KeyError(name)

    def baseline_prompt(self, option: Option) -> str:
        return self.baseline.format(name=option.name)


@dataclass(frozen=True)
class PromptSet:
    name: str
    version: str
    description: str
    groups: dict[str, Group]
    path: str
    source: str
    content_hash: str  # sha256 of the file bytes

    def group(self, name: str) -> Group:
        if name not in self.groups:
            raise PromptSetError([f"{self.path}: groups: no group '{name}' (have: {', '.join(self.groups)})"])
        return self.groups[name]


# -- YAML with duplicate-key detection ------------------------------------------------
class _Loader(yaml.SafeLoader):
    """A safe loader that records duplicate mapping keys instead of silently keeping the last,
    and refuses nesting deeper than :data:`MAX_DEPTH` (PyYAML composes recursively)."""

    duplicates: list[tuple[str, int]]
    depth: int = 0

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            continue  # PyYAML's own constructor reports it as a syntax problem
        if key in seen:
            loader.duplicates.append((str(key), key_node.start_mark.line + 1))
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_yaml(text: str, where: str) -> tuple[Any, list[str]]:
    if "\x00" in text:  # PyYAML's reader refuses it too, but with the whole file in its message
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise PromptSetError([f"{where}: line {line}: a NUL byte; a prompt set is plain text"])
    loader = None
    try:
        loader = _Loader(text)  # the reader checks every character here, before parsing
        loader.duplicates = []
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "yaml"
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc)
        raise PromptSetError([f"{where}: {at}: YAML syntax error: {problem}"]) from None
    except RecursionError:  # a construct the depth check does not see; never a traceback
        raise PromptSetError([f"{where}: nested too deeply"]) from None
    finally:
        if loader is not None:
            loader.dispose()
    problems = [f"{where}: line {line}: duplicate key '{key}'" for key, line in loader.duplicates]
    return data, problems


# -- templates --------------------------------------------------------------------------
def template_problem(template: Any) -> str | None:
    """Why ``template`` is not a usable template on an option name, or None when it is."""
    if not isinstance(template, str) or not template.strip():
        return "a template must be a non-empty string"
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        return f"bad template {template!r}: {exc}"
    if "name" not in fields:
        return f"bad template {template!r}: it must contain {{name}}"
    other = sorted({f for f in fields if f != "name"})
    if other:
        return f"bad template {template!r}: unknown field {{{other[0]}}}, only {{name}} is allowed"
    try:
        template.format(name="x")
    except (ValueError, IndexError, KeyError) as exc:  # e.g. {name!x} or {name:d}
        return f"bad template {template!r}: {exc}"
    return None


def generic_templates() -> list[str]:
    """The shared template list in ``prompt_sets/templates.yaml``."""
    where = str(GENERIC_TEMPLATES_FILE)
    if not GENERIC_TEMPLATES_FILE.is_file():
        raise PromptSetError([f"{where}: missing; it holds the generic templates"])
    data, problems = _parse_yaml(GENERIC_TEMPLATES_FILE.read_text(encoding="utf-8"), where)
    templates = data.get("templates") if isinstance(data, dict) else None
    if not isinstance(templates, list) or not templates:
        problems.append(f"{where}: templates: must be a non-empty list")
    else:
        problems += [f"{where}: templates[{i}]: {p}" for i, t in enumerate(templates)
                     if (p := template_problem(t))]
    if problems:
        raise PromptSetError(problems)
    return list(templates)


def _templates(value: Any, key: str, where: str, problems: list[str]) -> list[str] | None:
    """Validate a ``templates`` value (a list, or "generic"); None when absent."""
    if value is None:
        return None
    if value == GENERIC:
        return generic_templates()
    if not isinstance(value, list):
        problems.append(f"{where}: {key}: must be a list of templates or \"{GENERIC}\"")
        return None
    good = []
    for i, template in enumerate(value):
        problem = template_problem(template)
        if problem:
            problems.append(f"{where}: {key}[{i}]: {problem}")
        else:
            good.append(template)
    return good


def _threshold(value: Any, key: str, where: str, problems: list[str]) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        problems.append(f"{where}: {key}: must be a number between 0 and 1, got {value!r}")
        return None
    return float(value)


def _unknown(data: dict, allowed: set[str], key: str, where: str, problems: list[str]) -> None:
    for name in data:
        if name not in allowed:
            prefix = f"{key}." if key else ""
            problems.append(f"{where}: {prefix}{name}: unknown key (allowed: {', '.join(sorted(allowed))})")


# -- the loader -------------------------------------------------------------------------
def home_prompt_set_dir(home: Path) -> Path:
    """Where the prompt lab saves edited versions: ``<home>/prompt_sets/`` (never the package)."""
    return Path(home) / "prompt_sets"


def resolve_prompt_set_path(spec: str | Path, home: Path | None = None) -> Path:
    """The file a prompt set spec names; the one rule the CLI and the lab share.

    A path is a path. A bare name (``workshop``) is the home's saved version,
    ``<home>/prompt_sets/workshop.yaml``, when the lab has saved one, else the shipped
    ``prompt_sets/workshop.yaml``.
    """
    path = Path(spec)
    if path.is_file():
        return path
    if "/" not in str(spec):
        folders = ([home_prompt_set_dir(home)] if home is not None else []) + [PROMPT_SET_DIR]
        for folder in folders:
            for candidate in (folder / f"{spec}.yaml", folder / str(spec)):
                if candidate.is_file():
                    return candidate
    raise PromptSetError([f"{spec}: no such prompt set file"])


def bump_version(version: object) -> int | str:
    """The version after ``version``: a whole number plus one, else ``"<version>.1"``."""
    try:
        return int(str(version)) + 1
    except ValueError:
        return f"{version}.1"


def load_prompt_set(spec: str | Path, home: Path | None = None) -> PromptSet:
    """Read and validate a prompt set file; raises :class:`PromptSetError` listing every problem.

    ``home`` lets a bare name find the lab's saved version (see :func:`resolve_prompt_set_path`).
    """
    path = resolve_prompt_set_path(spec, home)
    where = str(spec)
    with user_file(path), path.open("rb") as f:
        raw = f.read(MAX_BYTES + 1)  # never the whole of a huge file
    if len(raw) > MAX_BYTES:
        raise PromptSetError([f"{where}: larger than {MAX_BYTES // 1_000_000} MB; a prompt set is a small text file"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PromptSetError([f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    data, problems = _parse_yaml(text, where)
    prompt_set = parse_prompt_set(data, where, text, hashlib.sha256(raw).hexdigest(), problems)
    return prompt_set


def parse_prompt_set(data: Any, where: str, source: str, content_hash: str,
                     problems: list[str] | None = None) -> PromptSet:
    """Validate parsed YAML ``data``; ``where`` names the file in messages."""
    problems = list(problems or [])
    if not isinstance(data, dict):
        raise PromptSetError(problems + [f"{where}: the file must be a mapping with name, version and groups"])
    _unknown(data, SET_KEYS, "", where, problems)
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{where}: name: required, a non-empty string")
    version = data.get("version")
    if version is None or isinstance(version, (dict, list, bool)):
        problems.append(f"{where}: version: required, a number or string")
    description = data.get("description") or ""
    set_templates = _templates(data.get("templates"), "templates", where, problems)

    groups: dict[str, Group] = {}
    raw_groups = data.get("groups")
    if not isinstance(raw_groups, dict) or not raw_groups:
        problems.append(f"{where}: groups: required, a mapping of group names to groups")
        raw_groups = {}
    for group_name, raw_group in raw_groups.items():
        group = _parse_group(str(group_name), raw_group, set_templates, where, problems)
        if group is not None:
            groups[str(group_name)] = group
    if problems:
        raise PromptSetError(problems)
    return PromptSet(name=name.strip(), version=str(version), description=str(description), groups=groups,
                     path=where, source=source, content_hash=content_hash)


def _parse_group(name: str, raw: Any, set_templates: list[str] | None, where: str,
                 problems: list[str]) -> Group | None:
    key = f"groups.{name}"
    if not isinstance(raw, dict):
        problems.append(f"{where}: {key}: must be a mapping with options")
        return None
    _unknown(raw, GROUP_KEYS, key, where, problems)
    kind = raw.get("kind", "attribute")
    if kind not in KINDS:
        problems.append(f"{where}: {key}.kind: must be one of {', '.join(KINDS)}, got {kind!r}")
    baseline = raw.get("baseline", DEFAULT_BASELINE)
    problem = template_problem(baseline)
    if problem:
        problems.append(f"{where}: {key}.baseline: {problem}")
    group_templates = _templates(raw.get("templates"), f"{key}.templates", where, problems)
    inherited = group_templates if group_templates is not None else set_templates

    none_name, none_threshold = _parse_none(raw.get("none"), key, where, problems)
    raw_options = raw.get("options")
    if not isinstance(raw_options, dict) or not raw_options:
        problems.append(f"{where}: {key}.options: empty; a group needs at least two options")
        return None
    options = _parse_options(raw_options, inherited, key, where, problems)
    if none_name is not None and none_name in raw_options:
        problems.append(f"{where}: {key}.none.name: duplicate name '{none_name}', it is also an option")
    has_threshold = any(o.threshold is not None for o in options)
    if has_threshold and none_name is None:
        none_name = "none"  # a per-option threshold needs a name for the answer below it
        if none_name in raw_options:
            problems.append(f"{where}: {key}.none: per-option thresholds need a none answer whose name "
                            f"is not an option; add none: {{name: ...}}")
    return Group(name=name, kind=str(kind), baseline=str(baseline), options=tuple(options),
                 none_name=none_name, none_threshold=none_threshold)


def _parse_none(raw_none: Any, key: str, where: str, problems: list[str]) -> tuple[str | None, float | None]:
    """A group's ``none`` answer: (its name, its threshold); (None, None) when the group has none."""
    if raw_none is None:
        return None, None
    none_name, none_threshold = None, None
    if isinstance(raw_none, dict):
        _unknown(raw_none, NONE_KEYS, f"{key}.none", where, problems)
        none_name = raw_none.get("name", "none")
        none_threshold = _threshold(raw_none.get("threshold"), f"{key}.none.threshold", where, problems)
    else:
        problems.append(f"{where}: {key}.none: must be a mapping like {{name: none, threshold: 0.3}}")
    if not isinstance(none_name, str) or not none_name.strip():
        problems.append(f"{where}: {key}.none.name: must be a non-empty string")
        none_name = None
    return none_name, none_threshold


def _parse_options(raw_options: dict, inherited: list[str] | None, key: str, where: str,
                   problems: list[str]) -> list[Option]:
    """A group's options, in file order; at least two, each name once."""
    if len(raw_options) < 2:  # confidence is a softmax over the options: with one it is always 1
        problems.append(f"{where}: {key}.options: a group needs at least two options")
    names = [str(n) for n in raw_options]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{where}: {key}.options: duplicate name '{dup}'")
    options = []
    for option_name, raw_option in raw_options.items():
        option = _parse_option(str(option_name), raw_option, inherited, f"{key}.options.{option_name}",
                               where, problems)
        if option is not None:
            options.append(option)
    return options


def _parse_option(name: str, raw: Any, inherited: list[str] | None, key: str, where: str,
                  problems: list[str]) -> Option | None:
    if raw is None:
        raw = {}
    if isinstance(raw, list):
        raw = {"prompts": raw}
    if not isinstance(raw, dict):
        problems.append(f"{where}: {key}: must be a list of prompts or a mapping with prompts")
        return None
    _unknown(raw, OPTION_KEYS, key, where, problems)
    prompts: list[Prompt] = []
    raw_prompts = raw.get("prompts")
    if "prompts" in raw and not raw_prompts:
        problems.append(f"{where}: {key}.prompts: empty")
    elif raw_prompts is not None and not isinstance(raw_prompts, list):
        problems.append(f"{where}: {key}.prompts: must be a list")
        raw_prompts = []
    for i, item in enumerate(raw_prompts or []):
        prompt = _parse_prompt(item, f"{key}.prompts[{i}]", where, problems)
        if prompt is not None:
            prompts.append(prompt)
    texts = [p.text for p in prompts]
    for text in sorted({t for t in texts if texts.count(t) > 1}):
        problems.append(f"{where}: {key}.prompts: duplicate prompt {text!r}")
    templates = _templates(raw.get("templates"), f"{key}.templates", where, problems)
    templates = templates if templates is not None else inherited
    for template in templates or []:
        text = template.format(name=name)
        if text not in texts:  # a template may spell out a prompt that is already listed
            prompts.append(Prompt(text))
            texts.append(text)
    if not prompts and "prompts" not in raw:
        problems.append(f"{where}: {key}.prompts: empty; give prompts or templates")
    threshold = _threshold(raw.get("threshold"), f"{key}.threshold", where, problems)
    return Option(name=name, prompts=tuple(prompts), threshold=threshold) if prompts else None


def _parse_prompt(item: Any, key: str, where: str, problems: list[str]) -> Prompt | None:
    if isinstance(item, str):
        if not item.strip():
            problems.append(f"{where}: {key}: empty prompt")
            return None
        return Prompt(item.strip())
    if isinstance(item, dict):
        _unknown(item, PROMPT_KEYS, key, where, problems)
        text, weight = item.get("text"), item.get("weight", 1.0)
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{where}: {key}.text: required, a non-empty string")
            return None
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
                or weight <= 0:
            problems.append(f"{where}: {key}.weight: must be a positive number, got {weight!r}")
            return None
        return Prompt(text.strip(), float(weight))
    problems.append(f"{where}: {key}: must be a string or {{text, weight}}")
    return None
