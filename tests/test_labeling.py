"""Bulk labeling against a real collection: a real open_clip model, real images, SQLite and FAISS.

The fixtures here (a small randomly initialised open_clip model and an indexed workshop world)
are shared with the search, evaluate and export tests: they need a real model, not a good one.
"""

from __future__ import annotations


import numpy as np
import pytest
from sqlalchemy import func, select

from labeler.store import db
from labeler.core import stored_scores
from labeler.store.catalog import Label, PromptSetRecord
from labeler.collection import Collection, in_session
from labeler.labeling.bulk import explain, label_collection
from labeler.core import scoring
from labeler.core.prompts import load_prompt_set
from tests.cli import manage
from tests.conftest import WORLD_SIZE

def labels_table(collection: Collection) -> list[tuple]:
    with collection.session() as s:
        return [tuple(r) for r in s.execute(select(Label.id, Label.image_id, Label.group, Label.value, Label.status,
                                                   Label.confidence, Label.version, Label.updated_at)
                                            .order_by(Label.id))]


def test_label_writes_one_label_per_image_and_group(indexed_collection):
    prompt_set = load_prompt_set("workshop")
    report = label_collection(indexed_collection, prompt_set, "mean-score").to_dict()
    groups = list(prompt_set.groups)
    assert report["labeled"] == WORLD_SIZE * len(groups) and report["inserted"] == report["labeled"]
    assert report["kept_reviewed"] == 0
    assert {g: sum(c.values()) for g, c in report["groups"].items()} == {g: WORLD_SIZE for g in groups}

    # The stored answer is what an independent per-image computation gives.
    ids, vecs = in_session(indexed_collection.vectors.read)
    concept = prompt_set.groups["concept"]
    scale = in_session(indexed_collection.models.encoder).logit_scale
    with indexed_collection.session() as s:
        labels = {l.image_id: l for l in s.scalars(select(Label).where(Label.group == "concept"))}
        scored = {image_id: stored_scores.label_scores(l) for image_id, l in labels.items()}
        record = s.scalar(select(PromptSetRecord))
    assert (record.name, record.version, record.content_hash) == ("workshop", "1", prompt_set.content_hash)
    for image_id, vec in zip(ids[:10], vecs[:10]):
        scores = []
        for option in concept.options:
            texts = [p.text for p in option.prompts]
            scores.append(float(np.mean(in_session(indexed_collection.vectors.text_vectors, texts) @ vec)))
        exp = np.exp(scale * (np.array(scores) - max(scores)))
        conf = exp / exp.sum()
        label = labels[int(image_id)]
        best = int(np.argmax(scores))
        assert label.value == label.predicted == concept.options[best].name
        assert label.confidence == pytest.approx(conf[best], abs=1e-5)
        assert label.margin == pytest.approx(conf[best] - np.sort(conf)[-2], abs=1e-5)
        assert (label.strategy, label.status, label.prompt_set_id, label.version) == ("mean-score", "proposed",
                                                                                      record.id, 1)
        assert list(scored[int(image_id)]) == concept.option_names
        for option, cosine, confidence in zip(concept.option_names, scores, conf):
            assert scored[int(image_id)][option]["cosine"] == pytest.approx(cosine, abs=1e-4)
            assert scored[int(image_id)][option]["confidence"] == pytest.approx(confidence, abs=1e-4)


def test_rerun_changes_nothing(indexed_collection):
    prompt_set = load_prompt_set("workshop")
    first = label_collection(indexed_collection, prompt_set)
    before = labels_table(indexed_collection)
    again = label_collection(indexed_collection, prompt_set)
    assert again.unchanged == again.labeled == first.labeled
    assert again.inserted == again.updated == 0
    assert labels_table(indexed_collection) == before  # no version bump, no timestamp change
    assert again.to_dict()["groups"] == first.to_dict()["groups"]


@pytest.mark.parametrize("first, second", [(100_000, 7), (7, 100_000)])
def test_chunked_scoring_gives_the_same_labels(indexed_collection, first, second):
    """One chunk is written in process; several by the writer process (sqlite_writer), the same rows."""
    prompt_set = load_prompt_set("workshop")
    written = label_collection(indexed_collection, prompt_set, chunk_rows=first)
    before = labels_table(indexed_collection)
    assert written.inserted == written.labeled == len(before) > 0
    report = label_collection(indexed_collection, prompt_set, chunk_rows=second, recheck=True)
    assert report.unchanged == report.labeled and labels_table(indexed_collection) == before


def test_reviewed_labels_survive_a_rerun(indexed_collection):
    prompt_set = load_prompt_set("workshop")
    label_collection(indexed_collection, prompt_set, "single")
    with indexed_collection.session() as s:
        labels = s.scalars(select(Label).where(Label.group == "concept").order_by(Label.id).limit(3)).all()
        labels[0].status, labels[0].value = "corrected", "saw"
        labels[1].status = "accepted"
        labels[2].status = "rejected"
    reviewed = {l.id for l in labels}
    before = {r[0]: r for r in labels_table(indexed_collection)}
    report = label_collection(indexed_collection, prompt_set, "max-score")
    assert report.kept_reviewed == 3
    assert report.labeled == WORLD_SIZE * len(prompt_set.groups) - 3
    after = {r[0]: r for r in labels_table(indexed_collection)}
    for label_id in reviewed:
        assert after[label_id] == before[label_id]
    with indexed_collection.session() as s:
        strategies = set(s.scalars(select(Label.strategy).where(Label.id.not_in(reviewed))))
        changed = s.scalar(select(func.count()).select_from(Label).where(Label.version == 3))
    assert strategies == {"max-score"}
    # Updated rows go up exactly one version (the reviewed ones went to 2 by their review), and only
    # when what a card shows moved: the value, or the confidence at the digits it is shown with.
    assert changed == 0

    def shown(row: tuple) -> tuple:
        return row[3], None if row[5] is None else round(row[5], scoring.SHOWN_DIGITS)

    for i in after:
        if i not in reviewed:
            assert after[i][6] == before[i][6] + (shown(after[i]) != shown(before[i])), (before[i], after[i])


def test_none_threshold_answers_none(indexed_collection, tmp_path):
    options = "    options:\n      hammer: ['a hammer']\n      ball: ['a ball']\n      book: ['a book']\n"
    plain, strict = tmp_path / "plain.yaml", tmp_path / "strict.yaml"
    plain.write_text("name: plain\nversion: 1\ngroups:\n  concept:\n" + options)
    label_collection(indexed_collection, load_prompt_set(plain), "mean-score")
    with indexed_collection.session() as s:
        best = dict(s.execute(select(Label.image_id, Label.confidence).where(Label.group == "concept")).all())
    threshold = float(np.median(list(best.values())))  # about half the images fall below it
    unsure = {i for i, c in best.items() if c < threshold}
    assert 0 < len(unsure) < WORLD_SIZE

    strict.write_text(f"name: strict\nversion: 1\ngroups:\n  concept:\n"
                      f"    none: {{name: nothing, threshold: {threshold!r}}}\n" + options)
    report = label_collection(indexed_collection, load_prompt_set(strict), "mean-score").to_dict()
    assert report["groups"]["concept"]["nothing"] == len(unsure)
    with indexed_collection.session() as s:
        answered_none = set(s.scalars(select(Label.image_id).where(Label.group == "concept", Label.value.is_(None))))
    assert answered_none == unsure
    from labeler.search import search
    hits = search(indexed_collection, "a hammer", k=100, where={"concept": "none"})
    assert {h.image_id for h in hits} == unsure


def test_explain_gives_per_prompt_cosines(indexed_collection):
    prompt_set = load_prompt_set("workshop")
    ids, vecs = in_session(indexed_collection.vectors.read)
    detail = explain(indexed_collection, int(ids[0]), prompt_set, "weighted")
    hammer = detail["concept"]["options"]["hammer"]
    texts = [p["text"] for p in hammer["prompts"]]
    assert texts == [p.text for p in prompt_set.groups["concept"].option("hammer").prompts]
    expected = in_session(indexed_collection.vectors.text_vectors, texts) @ vecs[0]
    np.testing.assert_allclose([p["cosine"] for p in hammer["prompts"]], expected, atol=1e-5)
    weights = np.array([p["weight"] for p in hammer["prompts"]])
    assert hammer["cosine"] == pytest.approx(float(weights @ expected / weights.sum()), abs=1e-5)
    assert sum(o["confidence"] for o in detail["concept"]["options"].values()) == pytest.approx(1.0)
    assert detail["concept"]["answer"] in prompt_set.groups["concept"].option_names


def test_label_cli_json_contract(indexed_cli):
    out = indexed_cli.json("label", "--prompt-set", "prompt_sets/workshop.yaml", "--group", "color", "--group", "size")
    assert set(out["groups"]) == {"color", "size"}
    assert out["labeled"] == 2 * WORLD_SIZE and out["kept_reviewed"] == 0
    assert out["prompt_set"]["name"] == "workshop"
    again = indexed_cli.json("label", "--prompt-set", "workshop", "--group", "color", "--group", "size")
    assert again["unchanged"] == 2 * WORLD_SIZE


def test_malformed_prompt_set_fails_precisely_and_changes_nothing(indexed_collection, model_spec, tmp_path):
    label_collection(indexed_collection, load_prompt_set("workshop"), "single")
    before = labels_table(indexed_collection)
    with indexed_collection.session() as s:
        sets_before = s.scalar(select(func.count()).select_from(PromptSetRecord))
    db.dispose_engines()
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nversion: 1\ngroups:\n  color:\n    options:\n      red:\n        prompts: []\n"
                   "      blue: ['a blue thing']\n")
    home = indexed_collection.config.home
    result = manage("--home", home, "--model", model_spec, "label", "--prompt-set", bad, "--json")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"error: {bad}: groups.color.options.red.prompts: empty\n"
    bad.write_text(bad.read_text().replace("['a blue thing']", "{prompts: ['a {colour} thing'], weight: 2}"))
    result = manage("--home", home, "--model", model_spec, "label", "--prompt-set", bad)
    assert result.returncode == 2 and result.stderr.count("\n") == 1  # every problem, one line
    assert f"{bad}: groups.color.options.red.prompts: empty; " in result.stderr
    assert f"{bad}: groups.color.options.blue.weight: unknown key" in result.stderr
    result = manage("--home", home, "--model", model_spec, "label", "--prompt-set", "workshop",
                    "--group", "colour")
    assert result.returncode == 2 and "no group 'colour'" in result.stderr
    assert labels_table(indexed_collection) == before
    with indexed_collection.session() as s:
        assert s.scalar(select(func.count()).select_from(PromptSetRecord)) == sets_before


def test_label_needs_an_embedded_collection(tmp_path, model_spec):
    result = manage("--home", tmp_path / "empty", "--model", model_spec, "label", "--prompt-set", "workshop")
    assert result.returncode == 2 and result.stderr.startswith("error: no images are embedded")
