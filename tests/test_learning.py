"""Labels that learn from reviews: real reviews on a real collection, `learn`, then `label` with the fit."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from labeler.store import db
from labeler.review import decisions as review
from labeler.store.catalog import Fit, ImageFile, Label
from labeler.collection import Collection
from labeler.config import Config
from labeler.labeling.bulk import label_collection
from labeler.ingest.run import index_paths
from labeler.core.prompts import load_prompt_set
from labeler.demo_world import generate_world
from tests.cli import Cli

LEARN_WORLD = 150
KEYS = {"reviewed", "method", "cv_accuracy", "temperature", "ece"}


@pytest.fixture(scope="module")
def learn_world(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("learn-world")
    generate_world(folder, LEARN_WORLD, seed=23, size=64)
    return folder


@pytest.fixture(scope="module")
def labeled_home(tmp_path_factory, model_spec, learn_world) -> Path:
    """A home with the learning world indexed and labeled by zero-shot, nothing reviewed."""
    home = tmp_path_factory.mktemp("learn") / "home"
    collection = Collection(Config(home=home, model=model_spec))
    index_paths(collection, [learn_world])
    label_collection(collection, load_prompt_set("workshop"))
    db.dispose_engines()
    return home


@pytest.fixture
def labeled(labeled_home, model_spec, tmp_path) -> tuple[Collection, Cli]:
    home = tmp_path / "home"
    shutil.copytree(labeled_home, home)
    return Collection(Config(home=home, model=model_spec)), Cli(home, model_spec)


def truth_of(collection: Collection, world: Path) -> dict[int, dict[str, str]]:
    rows = {row["file"]: row for row in csv.DictReader((world / "truth.csv").open())}
    with collection.session() as s:
        return {image_id: rows[Path(path).name] for image_id, path in s.execute(
            select(ImageFile.image_id, ImageFile.path))}


def review_as_truth(collection: Collection, truth: dict, group: str, per_option: int, seed: int = 0) -> set[int]:
    """A reviewer who knows the truth: per true value, accept or correct ``per_option`` random labels."""
    rng = np.random.default_rng(seed)
    done = set()
    with collection.session() as s:
        labels = s.scalars(select(Label).where(Label.group == group).order_by(Label.id)).all()
        by_value: dict[str, list[Label]] = {}
        for label in labels:
            if truth[label.image_id][group]:
                by_value.setdefault(truth[label.image_id][group], []).append(label)
        for value, members in sorted(by_value.items()):
            for i in rng.permutation(len(members))[:per_option]:
                label = members[i]
                if label.value == value:
                    review.decide(s, label.id, "accept", None, label.version)
                else:
                    review.decide(s, label.id, "correct", None, label.version, value)
                done.add(label.id)
    return done


def proposed_accuracy(collection: Collection, truth: dict, group: str) -> float:
    with collection.session() as s:
        rows = s.execute(select(Label.image_id, Label.value).where(Label.group == group,
                                                                   Label.status == "proposed")).all()
    return float(np.mean([truth[i][group] == v for i, v in rows if truth[i][group]]))


def test_reviews_teach_a_group_no_prompt_describes_and_label_proposes_with_the_fit(labeled, learn_world):
    collection, cli = labeled
    truth = truth_of(collection, learn_world)
    before = proposed_accuracy(collection, truth, "palette")
    with collection.session() as s:
        zero_shot = dict(s.execute(select(Label.id, Label.value).where(Label.group == "palette")).all())
    reviewed = review_as_truth(collection, truth, "palette", 30) | review_as_truth(collection, truth, "concept", 4)
    with collection.session() as s:
        snapshot = {l.id: (l.status, l.value, l.version) for l in s.scalars(select(Label).where(Label.id.in_(reviewed)))}

    report = cli.json("learn")
    assert set(report) == set(load_prompt_set("workshop").groups)
    for entry in report.values():
        assert KEYS <= set(entry)
    palette = report["palette"]
    assert palette["reviewed"] == 90 and palette["method"] in ("cache", "head", "gda", "proker")
    assert palette["cv_accuracy"]["learned"] > palette["cv_accuracy"]["zero_shot"] + 0.2
    assert report["size"]["reviewed"] == 0 and "kept zero-shot" in report["size"]["note"]

    labeled_now = cli.json("label", "--prompt-set", "workshop")
    assert labeled_now["methods"]["palette"] == {"strategy": f"fit:{palette['method']}", "fit_id": palette["fit_id"]}
    assert labeled_now["kept_reviewed"] == len(reviewed)
    with collection.session() as s:
        fits = {l.fit_id for l in s.scalars(select(Label).where(Label.group == "palette", Label.status == "proposed"))}
        assert fits == {palette["fit_id"]}
        assert s.get(Fit, palette["fit_id"]).group == "palette"
        after = {l.id: (l.status, l.value, l.version) for l in s.scalars(select(Label).where(Label.id.in_(reviewed)))}
    assert after == snapshot  # a review is never overwritten
    assert proposed_accuracy(collection, truth, "palette") > before + 0.25

    again = cli.json("label", "--prompt-set", "workshop")
    assert again["unchanged"] == again["labeled"] and again["updated"] == again["inserted"] == 0

    forced = cli.json("label", "--prompt-set", "workshop", "--strategy", "mean-embedding")
    assert {m["fit_id"] for m in forced["methods"].values()} == {None}
    with collection.session() as s:
        assert s.scalar(select(Label.fit_id).where(Label.group == "palette", Label.status == "proposed",
                                                    Label.fit_id.is_not(None))) is None
    with collection.session() as s:
        now = dict(s.execute(select(Label.id, Label.value).where(Label.group == "palette",
                                                                 Label.status == "proposed")).all())
    assert now == {i: v for i, v in zero_shot.items() if i in now}


def test_learning_with_no_reviews_is_one_clear_error(labeled):
    _, cli = labeled
    result = cli("learn", expect=2)
    assert result.stderr.count("\n") == 1 and "no reviewed labels yet" in result.stderr
    assert "no labels in group 'colour'" in cli("learn", "--group", "colour", expect=2).stderr


def test_a_group_with_one_option_is_refused(labeled, learn_world, tmp_path):
    collection, cli = labeled
    review_as_truth(collection, truth_of(collection, learn_world), "concept", 2)
    single = tmp_path / "single.yaml"
    single.write_text("name: single\nversion: 1\ngroups:\n  concept:\n    options:\n      hammer:\n"
                      "        prompts: ['a hammer']\n", encoding="utf-8")
    result = cli("learn", "--group", "concept", "--prompt-set", single, expect=2)
    assert result.stderr.count("\n") == 1 and "a group needs at least two options" in result.stderr


def test_a_value_the_prompt_set_lacks_is_reported_and_skipped(labeled, learn_world):
    collection, cli = labeled
    truth = truth_of(collection, learn_world)
    review_as_truth(collection, truth, "palette", 4)
    with collection.session() as s:
        label = s.scalars(select(Label).where(Label.group == "palette", Label.status == "proposed")).first()
        review.decide(s, label.id, "correct", None, label.version, "banana")
    report = cli.json("learn", "--group", "palette")
    assert report["palette"]["skipped"] == {"banana": 1}
    assert report["palette"]["reviewed"] == 12 and "banana" in report["palette"]["note"]


def test_imported_reviews_count_like_reviews_made_in_the_ui(labeled, learn_world, tmp_path):
    collection, cli = labeled
    rows = list(csv.DictReader((learn_world / "truth.csv").open()))[:24]
    reviews_csv = tmp_path / "reviews.csv"
    with reviews_csv.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "palette"])
        writer.writeheader()
        writer.writerows({"file": str(learn_world / r["file"]), "palette": r["palette"]} for r in rows)
    cli.json("import-labels", reviews_csv)
    report = cli.json("learn", "--group", "palette")
    assert report["palette"]["reviewed"] == 24


def test_most_informative_first_starts_with_typical_images_then_takes_turns(labeled, learn_world):
    collection, cli = labeled
    with collection.session() as s:
        order, _ = review.list_labels(s, group="material", sort="informative", limit=500)
    picks = [l for l in order if l.priority is not None]
    assert [l.priority for l in order[:len(picks)]] == list(range(len(picks))) and len(picks) == 8
    rest = order[len(picks):]
    values = [l.predicted for l in rest]
    first_round = values[:len(set(values))]
    assert sorted(first_round) == sorted(set(values))  # every proposed value once before any twice
    for value in set(values):
        margins = [l.margin for l in rest if l.predicted == value]
        assert margins == sorted(margins)

    truth = truth_of(collection, learn_world)
    review_as_truth(collection, truth, "material", 2)
    cli.json("label", "--prompt-set", "workshop")
    with collection.session() as s:
        assert s.scalar(select(Label.id).where(Label.group == "material", Label.status == "proposed",
                                               Label.priority.is_not(None))) is None


def test_replay_is_reproducible_and_plots(labeled, learn_world, tmp_path):
    _, cli = labeled
    args = ("evaluate", "--prompt-set", "workshop", "--truth", learn_world / "truth.csv", "--replay",
            "--shots", "1,4", "--group", "palette", "--group", "concept", "--seed", "5")
    first = cli.json(*args, "--out", tmp_path / "out")
    assert set(first) == {"palette", "concept"}
    for result in first.values():
        assert 0 <= result["zero_shot"] <= 1 and set(result["shots"]) == {"1", "4"}
        assert {"accuracy", "ece"} <= set(result["shots"]["4"])
    assert first["palette"]["shots"]["4"]["reviews"] == 12
    assert cli.json(*args) == first
    assert (tmp_path / "out" / "replay.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "out" / "replay.json").read_text()) == first
    assert "--replay needs --truth" in cli("evaluate", "--prompt-set", "workshop", "--reviewed", "--replay",
                                           expect=2).stderr
    assert "--shots must be" in cli(*args[:-2], "--shots", "0,x", expect=2).stderr


def test_replay_compares_each_method_alone_on_the_same_reviews(labeled, learn_world):
    _, cli = labeled
    args = ("evaluate", "--prompt-set", "workshop", "--truth", learn_world / "truth.csv", "--replay",
            "--shots", "2,8", "--group", "color", "--seed", "3")
    plain = cli.json(*args)
    both = cli.json(*args, "--methods", "gda,proker,cache,prompts")
    assert both["color"]["shots"] == plain["color"]["shots"]  # learn's own choice is unchanged
    methods = both["color"]["methods"]
    assert list(methods) == ["gda", "proker", "cache", "prompts"]
    for method, by_shot in methods.items():
        assert set(by_shot) == {"2", "8"}
        for k, result in by_shot.items():
            assert result["method"] in (method, "zero-shot")
            assert result["reviews"] == plain["color"]["shots"][k]["reviews"]
            assert 0 <= result["accuracy"] <= 1
    human = cli(*args, "--methods", "head").stdout
    assert "head" in human.splitlines()[-1]
    assert "--methods takes some of" in cli(*args, "--methods", "lda", expect=2).stderr
    assert "--methods goes with --replay" in cli(*args[:5], "--methods", "gda", expect=2).stderr
    assert "random order only" in cli(*args, "--order", "informative", "--methods", "prompts", expect=2).stderr


def test_write_prompt_set_gives_a_valid_new_version(labeled, learn_world, tmp_path):
    collection, cli = labeled
    truth = truth_of(collection, learn_world)
    review_as_truth(collection, truth, "concept", 4)
    out = tmp_path / "tuned.yaml"
    report = cli.json("learn", "--group", "concept", "--write-prompt-set", out)
    weights = report["concept"]["prompt_weights"]
    assert weights["reviews"] == 40 and weights["prompts"] + weights["dropped"] > 0
    tuned = load_prompt_set(out)
    assert tuned.version == "2" and tuned.name == "workshop"
    assert len(tuned.groups["concept"].options) == len(load_prompt_set("workshop").groups["concept"].options)
    labeled_again = cli.json("label", "--prompt-set", out, "--strategy", "weighted", "--group", "concept")
    assert labeled_again["prompt_set"]["content_hash"] == tuned.content_hash


def test_a_second_learn_and_label_that_keeps_every_fit_changes_no_label_version(labeled, learn_world):
    """Open review pages stay valid: a refit that proposes what it proposed before bumps nothing."""
    collection, cli = labeled
    truth = truth_of(collection, learn_world)
    review_as_truth(collection, truth, "palette", 20)
    cli.json("learn")
    cli.json("label", "--prompt-set", "workshop")
    with collection.session() as s:
        versions = dict(s.execute(select(Label.id, Label.version)).all())
        fits = set(s.scalars(select(Fit.id)))
    cli.json("learn")  # the same reviews: every group's fit learns the same classifier again
    again = cli.json("label", "--prompt-set", "workshop")
    with collection.session() as s:
        assert set(s.scalars(select(Fit.id))) > fits  # new fit rows, so the labels were rewritten
        assert dict(s.execute(select(Label.id, Label.version)).all()) == versions
    assert again["updated"] > 0  # written (new fit ids) ...


def test_search_prompts_writes_a_readable_prompt_set_that_labels_alone(labeled, learn_world, tmp_path):
    collection, cli = labeled
    truth = truth_of(collection, learn_world)
    review_as_truth(collection, truth, "palette", 8)
    vocabulary = tmp_path / "words.txt"
    vocabulary.write_text("# colours a person might try\na red thing\na blue thing\n\na white thing\n")
    out = tmp_path / "found.yaml"
    report = cli.json("learn", "--search-prompts", "--group", "palette", "--candidates", vocabulary,
                      "--write-prompt-set", out, "--prompt-set", "workshop")
    assert report["path"] == str(out) and report["candidates"] > 500
    palette = report["groups"]["palette"]
    assert palette["reviews"] == 24 and palette["options_reviewed"] == 3
    assert set(palette["cv_accuracy"]) == {"before", "after"}
    # the greedy search, or another group's options mapped whole onto palette's (colour's)
    assert palette["source"] == "search" or palette["source"] in load_prompt_set("workshop").groups
    assert set(palette["options"]) == {"warm", "cool", "neutral"}
    for option in palette["options"].values():
        assert option["prompts"] and all(isinstance(p, str) for p in option["prompts"])
        assert option["reviews"] == 8 and isinstance(option["gain"], int)
    text = out.read_text()
    assert "# palette: searched from 24 reviews (warm 8, cool 8, neutral 8)" in text
    assert "cross-validated accuracy" in text
    found = load_prompt_set(out)
    assert str(found.version) == "2"
    if palette["adopted"]:
        assert [p.text for p in found.groups["palette"].option("warm").prompts] == palette["options"]["warm"]["prompts"]
    assert [p.text for p in found.groups["concept"].option("hammer").prompts] == [
        p.text for p in load_prompt_set("workshop").groups["concept"].option("hammer").prompts]
    labeled_now = cli.json("label", "--prompt-set", out, "--strategy", "mean-embedding", "--group", "palette")
    assert labeled_now["labeled"] > 0
    # The same search again (the candidates now cached) gives the same; without --prompt-set it would
    # start from the set the labels were last proposed with, found.yaml.
    again = cli.json("learn", "--search-prompts", "--group", "palette", "--candidates", vocabulary,
                     "--write-prompt-set", out, "--force", "--prompt-set", "workshop")
    assert again["groups"]["palette"]["options"] == palette["options"]


def test_search_prompts_refuses_bad_input_with_one_line(labeled, learn_world, tmp_path):
    collection, cli = labeled
    truth = truth_of(collection, learn_world)
    review_as_truth(collection, truth, "palette", 3)
    out = tmp_path / "out.yaml"
    out.write_text("keep me")
    search = ("learn", "--search-prompts", "--group", "palette", "--write-prompt-set")
    empty, binary, big = tmp_path / "empty.txt", tmp_path / "bin.txt", tmp_path / "big.txt"
    empty.write_text("\n# nothing\n")
    binary.write_bytes(b"a red\0thing\xff")
    big.write_text("a red object\n" * 90_000)
    cases = [
        ((*search, out), "exists; give --force"),
        ((*search, tmp_path / "new.yaml", "--candidates", empty), "no phrases"),
        ((*search, tmp_path / "new.yaml", "--candidates", binary), "a binary file"),
        ((*search, tmp_path / "new.yaml", "--candidates", big), "at most 1 MB"),
        (("learn", "--search-prompts", "--group", "orientation", "--write-prompt-set", tmp_path / "new.yaml"),
         "reviews of 0 option(s)"),
        (("learn", "--search-prompts", "--group", "palette"), "needs --write-prompt-set"),
        (("learn", "--candidates", empty), "go with --search-prompts"),
    ]
    for args, message in cases:
        result = cli(*args, expect=2)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
    assert out.read_text() == "keep me" and not (tmp_path / "new.yaml").exists()


def test_the_prompt_set_of_a_groups_labels_is_read_from_the_last_runs_stamp(labeled):
    """One keyed read instead of sorting a million labels by updated_at; the same answer either way."""
    from sqlalchemy import delete

    from labeler.labeling.bulk import last_run_prompt_set_id
    from labeler.labeling.learning import prompt_set_of_labels
    from labeler.store.catalog import PromptSetRecord, Setting

    collection, _ = labeled
    with collection.session() as s:
        stamped = last_run_prompt_set_id(s, "concept")
        newest = s.scalar(select(Label.prompt_set_id).where(Label.group == "concept")
                          .order_by(Label.updated_at.desc(), Label.id.desc()).limit(1))
        assert stamped is not None and stamped == newest
        assert prompt_set_of_labels(s, "concept").content_hash == s.get(PromptSetRecord, stamped).content_hash
    with collection.session() as s:  # a run that stopped half way leaves no stamp: the labels answer
        s.execute(delete(Setting).where(Setting.key.like("labeling.stamp:%")))
        s.commit()
    with collection.session() as s:
        assert last_run_prompt_set_id(s, "concept") is None
        assert prompt_set_of_labels(s, "concept").content_hash == s.get(PromptSetRecord, stamped).content_hash
        assert last_run_prompt_set_id(s, "no such group") is None and prompt_set_of_labels(s, "no such group") is None
