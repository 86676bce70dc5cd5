#!/usr/bin/env python
"""The house drawn from its imports: rooms, arrows, circles, arrows back up, visits to db.py.

Reads every module of ``labeler/`` (imports at the top and inside functions alike) and prints:

* each room (subpackage, or the top-level modules) with the rooms it imports;
* circles: groups of modules that import each other, directly or around a loop (want 0);
* arrows back up: a module importing one on a higher floor of the README's drawing (want 0),
  or a blueprint importing the web app's assembler ``web/__init__``;
* the top-level modules besides the subpackages (want at most 12);
* where the catalog's sessions are opened: ``session_scope``/``collection.session()`` per room.
  The store, registry and index keeper (``vectors/``) take the caller's session: want 0 there.

    python bench/import_graph.py [--json]

Exits 1 when there is a circle or an arrow back up.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The floors of the README's drawing, bottom up; a module may import its own floor or lower ones.
FLOORS = {
    "setup": 0, "core": 1, "store": 2, "encoding": 2, "vectors": 3, "collection": 4,
    "ingest": 5, "labeling": 5, "review": 5, "exchange": 5, "search": 5, "curation": 5, "api": 6,
    "web": 7, "commands": 7, "cli": 7,
}
SETUP = {"config", "errors", "files", "resources", "demo_world"}


def modules(package: Path) -> dict[str, Path]:
    out = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _type_only(tree: ast.Module) -> set[int]:
    """Ids of the import nodes under ``if TYPE_CHECKING:``: annotations only, never run."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return out


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module → the labeler modules it imports (a ``from pkg import name`` of a module counts as that
    module); imports for type annotations only (``if TYPE_CHECKING:``) are left out."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        skip = _type_only(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets = []
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                absolute = ".".join(base + (node.module.split(".") if node.module else []))
                for alias in node.names:
                    full = f"{absolute}.{alias.name}"
                    targets.append(full if full in mods else absolute)
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            edges[name].update(t for t in targets if t in mods and t != name)
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def room(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "labeler"
    return "setup" if parts[1] in SETUP else parts[1]


def back_up(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    wrong = []
    for source, targets in edges.items():
        for target in targets:
            if target == "labeler.web" and source.startswith("labeler.web."):
                wrong.append((source, target))  # a blueprint reaching into the assembler
            elif room(source) in FLOORS and room(target) in FLOORS and FLOORS[room(target)] > FLOORS[room(source)]:
                wrong.append((source, target))
    return sorted(wrong)


def session_opens(mods: dict[str, Path]) -> dict[str, int]:
    """Per room: calls that open a unit of work (``session_scope(...)``, ``write_transaction(...)``, ``.session()``)."""
    counts: dict[str, int] = defaultdict(int)
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called in ("session_scope", "write_transaction", "session"):
                    counts[room(name)] += 1
    return dict(sorted(counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    mods = modules(ROOT / "labeler")
    edges = imports(mods)
    rooms: dict[str, set[str]] = defaultdict(set)
    for source, targets in edges.items():
        rooms[room(source)].update(room(t) for t in targets if room(t) != room(source))
    top = sorted(m for m, p in mods.items() if m.count(".") == 1 and p.name != "__init__.py")
    report = {
        "modules": len(mods), "arrows": sum(len(t) for t in edges.values()),
        "circles": circles(edges), "arrows_back_up": back_up(edges),
        "top_level_modules": len(top), "rooms": {r: sorted(t) for r, t in sorted(rooms.items())},
        "session_opens": session_opens(mods),
    }
    if args.json:
        print(json.dumps({**report, "top_level": top}, indent=2))
    else:
        for name, targets in report["rooms"].items():
            print(f"{name:<11} → {', '.join(targets) or '-'}")
        print(f"{report['modules']} modules, {report['arrows']} arrows; top-level modules: {len(top)} ({', '.join(top)})")
        print(f"circles: {len(report['circles'])} {report['circles'] or ''}")
        print(f"arrows back up: {len(report['arrows_back_up'])} {report['arrows_back_up'] or ''}")
        print("units of work opened, per room: " + ", ".join(f"{k} {v}" for k, v in report["session_opens"].items()))
    sys.exit(1 if report["circles"] or report["arrows_back_up"] else 0)


if __name__ == "__main__":
    main()
