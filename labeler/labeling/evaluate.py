"""Evaluation: how well each ensemble strategy labels images whose truth is known.

Truth comes from a CSV (``file`` + one column per group, e.g. the world's ``truth.csv``) or from
reviewed labels. The result per group and strategy is the study's before/after table: accuracy,
per-option accuracy, mean confidence on the true option and ECE.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from sqlalchemy import select

from ..core import scoring
from ..store.catalog import DECIDED, REVIEWED_ONLY, Label
from ..collection import Collection
from ..store.csvfiles import match_rows, read_csv
from ..errors import LabelerError
from .bulk import encode_groups, logit_scale
from ..core.prompts import PromptSet

@dataclass
class Truth:
    """Known answers: ``{group: {image_id: value}}``, and the CSV rows that matched no image."""

    values: dict[str, dict[int, str]]
    unmatched: list[str]


def truth_from_csv(collection: Collection, csv_path: Path, groups: Sequence[str]) -> Truth:
    rows = read_csv(csv_path)
    with collection.session() as s:
        ids = match_rows(s, csv_path, rows)
    values: dict[str, dict[int, str]] = {g: {} for g in groups if g in rows[0]} if rows else {}
    unmatched = []
    for row, image_id in zip(rows, ids):
        if image_id is None:
            unmatched.append(row.get("path") or row.get("file") or row.get("image_id") or "?")
            continue
        for group in values:
            value = (row.get(group) or "").strip()
            if value:
                values[group][image_id] = value
    return Truth(values, unmatched)


def truth_from_reviews(collection: Collection, groups: Sequence[str]) -> Truth:
    """Labels a human accepted or corrected, as truth (a rejected label says what it is not)."""
    values: dict[str, dict[int, str]] = {g: {} for g in groups}
    with collection.session() as s:
        # value IS NOT NULL stays out of the SQL: it offers SQLite (group, value) as a range over the
        # whole group, which it may pick over the seek on (group, status) of the reviewed labels.
        rows = s.execute(select(Label.image_id, Label.group, Label.value).where(
            Label.group.in_(list(groups)), Label.status.in_(DECIDED), REVIEWED_ONLY))
        for image_id, group, value in rows:
            if value is not None:
                values[group][image_id] = value
    return Truth({g: v for g, v in values.items() if v}, [])


def group_metrics(names: list[str], none_name: str | None, confidence: np.ndarray, choice: np.ndarray,
                  top_confidence: np.ndarray, truth: list[str]) -> dict:
    """Metrics of one group and strategy. ``confidence`` ``[N, O]``, ``choice`` ``[N]`` (NONE = none),
    ``top_confidence`` ``[N]`` of the answer, ``truth`` ``[N]`` option names (or the none name)."""
    answers = [none_name if c == scoring.NONE else names[c] for c in choice.tolist()]
    correct = np.array([a == t for a, t in zip(answers, truth)], bool)
    position = {n: i for i, n in enumerate(names)}
    true_conf = [confidence[i, position[t]] for i, t in enumerate(truth) if t in position]
    per_option = {}
    for option in sorted(set(truth)):
        rows = [i for i, t in enumerate(truth) if t == option]
        per_option[option] = round(float(correct[rows].mean()), 4)
    return {
        "accuracy": round(float(correct.mean()), 4) if len(correct) else 0.0,
        "mean_true_confidence": round(float(np.mean(true_conf)), 4) if true_conf else 0.0,
        "ece": round(scoring.expected_calibration_error(top_confidence, correct, 10), 4),
        "n": int(len(correct)),
        "per_option": per_option,
        "reliability": [list(map(float, a)) for a in scoring.reliability_bins(top_confidence, correct, 10)],
    }


def evaluate(collection: Collection, prompt_set: PromptSet, truth: Truth,
             strategies: Sequence[str] = scoring.STRATEGIES) -> dict:
    """``{group: {strategy: metrics}}`` for every group of ``prompt_set`` that has truth.

    Truth values that are not an option of the group (nor its none name) are left out and counted
    under ``skipped``.
    """
    groups = [g for g in prompt_set.groups if truth.values.get(g)]
    if not groups:
        raise LabelerError(f"no truth for any group of '{prompt_set.name}' "
                           f"(groups: {', '.join(prompt_set.groups)}); name CSV columns after the groups")
    encoded = encode_groups(collection, prompt_set, groups)
    scale = logit_scale(collection)
    # One read for every group: the truth files usually name the same images in each column.
    with collection.session() as s:
        all_ids, all_vecs = collection.vectors.read(s, sorted({i for g in groups for i in truth.values[g]}))
    row_of = {int(i): row for row, i in enumerate(all_ids)}
    results: dict[str, dict] = {}
    for group_name in groups:
        group = encoded[group_name]
        known = set(group.option_names) | ({group.group.none_name} if group.group.none_name else set())
        pairs = sorted((i, v) for i, v in truth.values[group_name].items() if v in known)
        skipped = len(truth.values[group_name]) - len(pairs)
        rows = [row_of[i] for i, _ in pairs if i in row_of]
        ids, vecs = all_ids[rows], all_vecs[rows]
        if len(ids) == 0:
            continue
        value_of = dict(pairs)
        true = [value_of[int(i)] for i in ids]
        results[group_name] = {}
        for strategy in strategies:
            _, confidence, decision = group.decide(strategy, vecs, scale)
            metrics = group_metrics(group.option_names, group.group.none_name, confidence, decision.choice,
                                    decision.confidence, true)
            metrics["skipped"] = skipped
            results[group_name][strategy] = metrics
    if not results:
        raise LabelerError("no image with truth is embedded in the collection; check the truth file's paths")
    return results


def public(results: dict) -> dict:
    """The ``evaluate --json`` contract: accuracy, mean_true_confidence, ece, per_option (+ n, skipped)."""
    return {g: {s: {k: v for k, v in m.items() if k != "reliability"} for s, m in by_strategy.items()}
            for g, by_strategy in results.items()}


def table_rows(results: dict) -> list[dict]:
    return [{"group": g, "strategy": s, "accuracy": m["accuracy"], "mean_true_confidence": m["mean_true_confidence"],
             "ece": m["ece"], "n": m["n"]} for g, by_strategy in results.items() for s, m in by_strategy.items()]


def write_outputs(results: dict, out_dir: Path) -> dict[str, str]:
    """``evaluation.json``, ``evaluation.csv`` and ``evaluation.png`` in ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "evaluation.json", "csv": out_dir / "evaluation.csv", "png": out_dir / "evaluation.png"}
    paths["json"].write_text(json.dumps(results, indent=2), encoding="utf-8")
    rows = table_rows(results)
    with paths["csv"].open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(results, paths["png"])
    return {k: str(v) for k, v in paths.items()}


def plot(results: dict, png: Path) -> None:
    """Left: accuracy per strategy per group. Right: reliability diagram of the first group."""
    import matplotlib  # lazy: matplotlib only when a plot is written

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib only when a plot is written

    groups = list(results)
    strategies = list(next(iter(results.values())))
    fig, (bars, reliability) = plt.subplots(1, 2, figsize=(13, 5))
    width = 0.8 / max(len(strategies), 1)
    x = np.arange(len(groups))
    for i, strategy in enumerate(strategies):
        bars.bar(x + i * width, [results[g].get(strategy, {}).get("accuracy", 0) for g in groups], width,
                 label=strategy)
    bars.set_xticks(x + width * (len(strategies) - 1) / 2, groups, rotation=20)
    bars.set_ylim(0, 1)
    bars.set_ylabel("accuracy")
    bars.set_title("accuracy per strategy")
    bars.legend(fontsize=8)
    first = groups[0]
    reliability.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    for strategy in strategies:
        counts, accuracy, confidence = (np.array(a) for a in results[first][strategy]["reliability"])
        filled = counts > 0
        reliability.plot(confidence[filled], accuracy[filled], marker="o",
                         label=f"{strategy} (ECE {results[first][strategy]['ece']:.3f})")
    reliability.set_xlim(0, 1)
    reliability.set_ylim(0, 1)
    reliability.set_xlabel("confidence")
    reliability.set_ylabel("accuracy")
    reliability.set_title(f"reliability: {first}")
    reliability.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def plot_replay(results: dict, png: Path, order: str) -> None:
    """Accuracy against reviews per option, one line per group, its zero-shot accuracy dashed."""
    import matplotlib  # lazy: matplotlib only when a plot is written

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib only when a plot is written

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, (group, result) in enumerate(results.items()):
        colour = f"C{i % 10}"
        shots = sorted(result["shots"], key=int)
        ax.plot([int(k) for k in shots], [result["shots"][k]["accuracy"] for k in shots], marker="o",
                color=colour, label=group)
        ax.axhline(result["zero_shot"], color=colour, linestyle="--", linewidth=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("reviews per option")
    ax.set_ylabel("accuracy on the images not reviewed")
    ax.set_ylim(0, 1.01)
    ax.set_title(f"learning from reviews ({order} order); dashed: zero-shot")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
