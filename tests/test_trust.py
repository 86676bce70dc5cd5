"""Trusted labels through the real CLI on a real collection: sample, import, learn, label, accept, undo."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select, text

from labeler.collection import Collection
from labeler.config import Config
from labeler.core.prompts import load_prompt_set
from labeler.demo_world import generate_world
from labeler.ingest.run import index_paths
from labeler.labeling.bulk import label_collection
from labeler.review import audit
from labeler.review import decisions as review
from labeler.review import trust
from labeler.store import db, queue_indexes
from labeler.store.catalog import AcceptRun, ImageFile, Label, ReviewEvent, Setting, utcnow
from tests.cli import Cli

WORLD = 160
GROUP = "color"


@pytest.fixture(scope="module")
def trust_world(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("trust-world")
    generate_world(folder, WORLD, seed=977, size=64)
    return folder


@pytest.fixture(scope="module")
def labeled_home(tmp_path_factory, model_spec, trust_world) -> Path:
    home = tmp_path_factory.mktemp("trust") / "home"
    collection = Collection(Config(home=home, model=model_spec))
    index_paths(collection, [trust_world])
    label_collection(collection, load_prompt_set("workshop"), groups=[GROUP, "concept"])
    db.dispose_engines()
    return home


@pytest.fixture
def labeled(labeled_home, model_spec, tmp_path) -> tuple[Collection, Cli]:
    home = tmp_path / "home"
    shutil.copytree(labeled_home, home)
    return Collection(Config(home=home, model=model_spec)), Cli(home, model_spec)


def review_sample(cli: Cli, world: Path, tmp_path: Path, count: int, seed: int = 1) -> Path:
    """``manage.py sample``, filled in from truth.csv by a reviewer who knows it, then imported."""
    truth = {row["file"]: row for row in csv.DictReader((world / "truth.csv").open())}
    out = tmp_path / "sample.csv"
    written = cli.json("sample", "--group", GROUP, "--count", count, "--seed", seed, "--out", out)
    assert written["count"] == count
    rows = list(csv.DictReader(out.open()))
    assert [r[GROUP] for r in rows] == [""] * count  # the reviewer decides every value
    for row in rows:
        row[GROUP] = truth[Path(row["path"]).name][GROUP]
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image_id", "path", GROUP])
        writer.writeheader()
        writer.writerows(rows)
    cli.json("import-labels", out)
    return out


def learn_and_label(cli: Cli) -> None:
    cli.json("learn", "--group", GROUP)
    cli.json("label", "--prompt-set", "workshop", "--group", GROUP, "--group", "concept")


def statuses(collection: Collection) -> dict[int, tuple[str, str | None, int | None]]:
    with collection.session() as s:
        return {l.id: (l.status, l.value, l.accept_run_id)
                for l in s.scalars(select(Label).where(Label.group == GROUP))}


def test_bad_input_is_one_line_and_exit_2(labeled):
    collection, cli = labeled
    for args, words in [(("--group", "nope", "--min-precision", "0.99"), "unknown group 'nope'"),
                        (("--group", GROUP, "--min-precision", "0.5"), "strictly between 0.5 and 1.0"),
                        (("--group", GROUP, "--min-precision", "1"), "strictly between"),
                        (("--group", GROUP, "--min-precision", "1.5"), "strictly between"),
                        (("--group", GROUP, "--min-precision", "0.99"), f"group '{GROUP}' has no fit"),
                        (("--undo", "99"), "no accept run 99"),
                        (("--group", GROUP), "needs --group G and --min-precision P")]:
        result = cli("accept", *args, expect=2)
        assert words in result.output and "Traceback" not in result.output, (args, result.output)
    assert cli("sample", "--group", "nope", "--count", "3", "--out", "x.csv", expect=2).output.count("\n") == 1


def test_few_random_reviews_refuse_and_name_how_many_more(labeled, trust_world, tmp_path):
    collection, cli = labeled
    review_sample(cli, trust_world, tmp_path, 6)
    learn_and_label(cli)
    before = statuses(collection)
    result = cli("accept", "--group", GROUP, "--min-precision", "0.6", expect=2)
    assert "review about" in result.output and f"manage.py sample --group {GROUP}" in result.output, result.output
    refused = cli.json("accept", "--group", GROUP, "--min-precision", "0.6", expect=2)
    assert refused["random_reviews"] == 6 and refused["more_random_reviews"] >= 1
    assert statuses(collection) == before  # nothing written
    # no number of reviews makes zero-shot confidences below 0.8 certify 0.99: it says so instead
    assert "confidences are too low" in cli("accept", "--group", GROUP, "--min-precision", "0.99", expect=2).output


def test_queue_reviews_are_not_a_random_sample(labeled, trust_world, tmp_path):
    """Reviews made in the queue teach the fit but are not evidence for accept."""
    collection, cli = labeled
    with collection.session() as s:
        for label in s.scalars(select(Label).where(Label.group == GROUP).order_by(Label.margin).limit(60)):
            review.decide(s, label.id, "accept", None, label.version)
    learn_and_label(cli)
    refused = cli.json("accept", "--group", GROUP, "--min-precision", "0.9", expect=2)
    assert refused["random_reviews"] == 0 and refused["reviews"] == 60


def test_accept_writes_auto_labels_with_their_run_and_undo_returns_them(labeled, trust_world, tmp_path):
    collection, cli = labeled
    review_sample(cli, trust_world, tmp_path, 110)
    learn_and_label(cli)
    with collection.session() as s:  # a person's decision that accept must never touch
        mine = s.scalars(select(Label).where(Label.group == GROUP, Label.status == "proposed")
                         .order_by(Label.confidence.desc()).limit(1)).one()
        review.decide(s, mine.id, "correct", None, mine.version, "purple")
        mine_id = mine.id
    # the reviews changed: accept wants a fit that knows them, and proposals made by it
    assert "changed since its fit" in cli("accept", "--group", GROUP, "--min-precision", "0.9", expect=2).output
    cli.json("learn", "--group", GROUP)
    assert "not made by its newest fit" in cli("accept", "--group", GROUP, "--min-precision", "0.9", expect=2).output
    cli.json("label", "--prompt-set", "workshop", "--group", GROUP)
    before = statuses(collection)

    dry = cli.json("accept", "--group", GROUP, "--min-precision", "0.9", "--dry-run")
    assert dry["run"] is None and statuses(collection) == before
    done = cli.json("accept", "--group", GROUP, "--min-precision", "0.9")
    assert set(done) >= {"group", "threshold", "estimated_precision", "lower_bound", "accepted", "coverage", "run"}
    assert {k: dry[k] for k in ("threshold", "accepted", "lower_bound")} == \
        {k: done[k] for k in ("threshold", "accepted", "lower_bound")}
    assert done["lower_bound"] >= 0.9 and done["estimated_precision"] >= done["lower_bound"]
    assert done["accepted"] > 0 and done["random_reviews"] == 110
    after = statuses(collection)
    proposed_before = [i for i, (status, _, _) in before.items() if status == "proposed"]
    assert done["coverage"] == round(done["accepted"] / len(proposed_before), 4)
    auto = {i for i, (status, _, _) in after.items() if status == "auto"}
    assert len(auto) == done["accepted"] and auto <= set(proposed_before)
    assert all(after[i][2] == done["run"] and after[i][1] == before[i][1] for i in auto)
    assert {i: v for i, v in after.items() if i not in auto} == {i: v for i, v in before.items() if i not in auto}
    assert after[mine_id] == ("corrected", "purple", None)
    with collection.session() as s:
        events = s.scalars(select(ReviewEvent).where(ReviewEvent.run_id == done["run"])).all()
        assert {e.label_id for e in events} == auto and {e.action for e in events} == {"auto"}
        run = s.get(AcceptRun, done["run"])
        assert (run.group, run.accepted, run.lower_bound) == (GROUP, done["accepted"], done["lower_bound"])
        confident = s.scalars(select(Label).where(Label.id.in_(auto))).all()
        assert min(label.confidence for label in confident) >= done["threshold"]

    # exports carry the auto status and the run's stated precision
    cli.json("export", "--format", "csv", tmp_path / "out.csv")
    rows = {int(r["image_id"]): r for r in csv.DictReader((tmp_path / "out.csv").open())}
    with collection.session() as s:
        image_of = dict(s.execute(select(Label.id, Label.image_id).where(Label.group == GROUP)).all())
    for i in auto:
        row = rows[image_of[i]]
        assert row[f"{GROUP}:status"] == "auto" and float(row[f"{GROUP}:stated_precision"]) == done["lower_bound"]
    assert rows[image_of[mine_id]][f"{GROUP}:stated_precision"] == ""
    cli.json("export", "--format", "jsonl", tmp_path / "out.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").open()]
    stated = {x["image_id"]: x["labels"][GROUP]["stated_precision"] for x in lines if GROUP in x["labels"]}
    assert {image_of[i] for i in auto} == {k for k, v in stated.items() if v == done["lower_bound"]}
    cli.json("export", "--format", "labelstudio", tmp_path / "ls.json")
    tasks = {t["id"]: t for t in json.loads((tmp_path / "ls.json").read_text())}
    some = tasks[image_of[min(auto)]]
    assert some["data"]["labeler"][GROUP]["stated_precision"] == done["lower_bound"]
    assert all(r["from_name"] != GROUP for a in some.get("annotations", []) for r in a["result"])
    assert any(r["from_name"] == GROUP and r["score"] for r in some["predictions"][0]["result"])

    # relabel: an auto label stays auto while its answer stands
    relabeled = cli.json("label", "--prompt-set", "workshop", "--group", GROUP, "--strategy", "mean-embedding")
    now = statuses(collection)
    with collection.session() as s:
        predicted = dict(s.execute(select(Label.id, Label.predicted).where(Label.group == GROUP)).all())
    for i in auto:
        if now[i][0] == "auto":
            assert now[i] == after[i] and predicted[i] == after[i][1]
        else:
            assert now[i][0] == "proposed" and now[i][2] is None and predicted[i] != after[i][1]
    assert relabeled["kept_reviewed"] >= sum(1 for i in auto if now[i][0] == "auto")
    assert now[mine_id] == ("corrected", "purple", None)
    cli.json("label", "--prompt-set", "workshop", "--group", GROUP)  # back to the fit

    # a spot-check: the queue's spot-check sort serves the run's auto labels, in no confidence order
    still = sorted(i for i, v in statuses(collection).items() if v[0] == "auto")
    with collection.session() as s:
        served, total = review.list_labels(s, group=GROUP, status="auto", sort="spot-check", limit=500)
        first = review.list_labels(s, group=GROUP, sort="spot-check", limit=len(still))[0]
        assert sorted(label.id for label in first) == still  # unfiltered: the auto labels come first
        assert total == len(still) and sorted(label.id for label in served) == still
        shown = [label.confidence for label in served]
        assert shown != sorted(shown) and shown != sorted(shown, reverse=True)
    with collection.session() as s:
        label = s.get(Label, still[0])
        review.decide(s, label.id, "accept", None, label.version)
    shown = cli.json("accept", "--run", done["run"])
    assert shown["spot_checks"]["checked"] == 1 and shown["spot_checks"]["verified_precision"] == 1.0
    with collection.session() as s:
        assert s.scalars(select(ReviewEvent.run_id).where(ReviewEvent.label_id == still[0])
                         .order_by(ReviewEvent.id.desc()).limit(1)).one() == done["run"]

    undone = cli.json("accept", "--undo", done["run"])
    assert undone == {"run": done["run"], "group": GROUP, "returned": len(still) - 1, "kept": 1, "rebuilt_indexes": []}
    final = statuses(collection)
    assert final[still[0]] == ("accepted", after[still[0]][1], done["run"])  # the person's decision stays
    assert all(final[i][0] == "proposed" and final[i][2] is None for i in still[1:])
    assert final[mine_id] == ("corrected", "purple", None)
    assert "already undone" in cli("accept", "--undo", done["run"], expect=2).output


def test_id_chunks_hold_at_most_size_ids_each_in_order():
    ids = np.array([3, 5, 9, 10, 40, 41, 42])
    assert trust.id_chunks(ids, 3) == [(3, 9), (10, 41), (42, 42)]
    assert trust.id_chunks(ids, 100) == [(3, 42)]
    assert trust.id_chunks(np.zeros(0, np.int64), 3) == []


def planned_accept(collection: Collection, cli: Cli, world: Path, tmp_path: Path) -> tuple[dict, list[int]]:
    """110 random reviews, learn, label; then what ``accept --dry-run`` at 0.9 says and the ids of
    the labels it would accept."""
    review_sample(cli, world, tmp_path, 110)
    learn_and_label(cli)
    dry = trust.accept(collection, GROUP, 0.9, dry_run=True)
    with collection.session() as s:
        planned = s.scalars(select(Label.id).where(Label.group == GROUP, Label.status == "proposed",
                                                   Label.confidence >= dry["threshold"]).order_by(Label.id)).all()
    return dry, planned


def test_accept_writes_in_chunks_with_progress_and_leaves_a_decision_made_meanwhile(
        labeled, trust_world, tmp_path, monkeypatch):
    collection, cli = labeled
    dry, planned = planned_accept(collection, cli, trust_world, tmp_path)
    assert len(planned) == dry["accepted"] > 20
    monkeypatch.setattr(trust, "WRITE_CHUNK", 7)
    late = planned[-1]  # in the last chunk: a reviewer decides it while the first chunks are written
    seen: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))
        if len(seen) == 2:
            with collection.session() as s:
                label = s.get(Label, late)
                review.decide(s, late, "correct", None, label.version, "purple")

    done = trust.accept(collection, GROUP, 0.9, progress=progress)
    assert done["accepted"] == len(planned) - 1 and done["threshold"] == dry["threshold"]
    assert len(seen) == 1 + -(-len(planned) // 7) and seen[0] == (0, len(planned))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and seen[-1][0] == done["accepted"]
    now = statuses(collection)
    assert sorted(i for i, v in now.items() if v[0] == "auto") == [i for i in planned if i != late]
    assert now[late] == ("corrected", "purple", None)
    with collection.session() as s:
        run = s.get(AcceptRun, done["run"])
        assert (run.accepted, run.coverage) == (done["accepted"], done["coverage"])
        events = s.scalars(select(ReviewEvent.label_id).where(ReviewEvent.run_id == done["run"])).all()
        assert sorted(events) == [i for i in planned if i != late]

    undo_seen: list[tuple[int, int]] = []
    undone = trust.undo(collection, done["run"], progress=lambda d, t: undo_seen.append((d, t)))
    assert undone == {"run": done["run"], "group": GROUP, "returned": done["accepted"], "kept": 0,
                      "rebuilt_indexes": []}  # a few labels: the queue indexes are updated in place
    assert undo_seen[-1] == (done["accepted"], done["accepted"]) and len(undo_seen) > 2
    assert all(v[0] != "auto" for v in statuses(collection).values())


def test_an_accept_that_moves_most_labels_sets_the_queue_indexes_aside_and_builds_them_again(
        labeled, trust_world, tmp_path, monkeypatch):
    """Past BULK_ROWS (500,000 in use; here 1) an accept or undo of a group that holds most of the
    labels drops the queue indexes while it writes and builds them again: the same labels change,
    and the indexes agree with the table after."""
    collection, cli = labeled
    dry, planned = planned_accept(collection, cli, trust_world, tmp_path)
    names = [ix.name for ix in queue_indexes.QUEUE_INDEXES]
    monkeypatch.setattr(queue_indexes, "BULK_ROWS", 1)
    monkeypatch.setattr(queue_indexes, "BULK_SHARE", 0.05)  # this accept moves about a tenth of the labels here
    monkeypatch.setattr(trust, "WRITE_CHUNK", 7)
    gone_while_writing: list[list[str]] = []

    def progress(done: int, total: int) -> None:
        with collection.session() as s:
            gone_while_writing.append(queue_indexes.missing(s))

    done = trust.accept(collection, GROUP, 0.9, progress=progress)
    assert done["accepted"] == len(planned) and done["rebuilt_indexes"] == names
    assert gone_while_writing and all(gone == names for gone in gone_while_writing)
    assert sorted(i for i, v in statuses(collection).items() if v[0] == "auto") == planned

    def consistent() -> None:
        with collection.session() as s:
            assert queue_indexes.missing(s) == []
            assert s.execute(text("PRAGMA integrity_check")).scalar() == "ok"  # every index matches the table

    consistent()
    undone = trust.undo(collection, done["run"])
    assert undone["returned"] == len(planned) and undone["rebuilt_indexes"] == names
    assert all(v[0] != "auto" for v in statuses(collection).values())
    consistent()


def test_a_second_accept_of_a_group_is_refused_while_one_runs(labeled, trust_world, tmp_path):
    collection, cli = labeled
    review_sample(cli, trust_world, tmp_path, 110)
    learn_and_label(cli)
    owner = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": utcnow().isoformat()})
    with collection.session() as s:
        s.add(Setting(key=trust._lock_key(GROUP), value=owner))
    before = statuses(collection)
    assert "another accept of 'color' is running" in cli("accept", "--group", GROUP, "--min-precision", "0.9",
                                                        expect=2).output
    assert statuses(collection) == before
    with collection.session() as s:  # the holder died: its lock is stale and the next accept runs
        s.get(Setting, trust._lock_key(GROUP)).value = json.dumps({"host": socket.gethostname(), "pid": 2**22 + 7})
    assert cli.json("accept", "--group", GROUP, "--min-precision", "0.9")["run"] is not None
    with collection.session() as s:
        assert s.get(Setting, trust._lock_key(GROUP)) is None
        assert s.scalar(select(ImageFile.id).limit(1)) is not None


@pytest.fixture(scope="module")
def postgres_url():
    from tests import postgres

    reason = postgres.available()
    if reason:
        pytest.skip(reason)
    with postgres.postgres_server() as url:
        yield url


@pytest.mark.slow
def test_accept_and_undo_on_postgresql(postgres_url, tmp_path, model_spec, trust_world, monkeypatch):
    from labeler.exchange.importing import import_labels

    config = Config(home=tmp_path / "home", database_url=postgres_url, model=model_spec)
    collection = Collection(config)
    index_paths(collection, [trust_world])
    label_collection(collection, load_prompt_set("workshop"), groups=[GROUP])
    truth = {row["file"]: row for row in csv.DictReader((trust_world / "truth.csv").open())}
    out = tmp_path / "sample.csv"
    trust.sample(collection, GROUP, 110, out, seed=1)
    rows = list(csv.DictReader(out.open()))
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image_id", "path", GROUP])
        writer.writeheader()
        writer.writerows({**r, GROUP: truth[Path(r["path"]).name][GROUP]} for r in rows)
    import_labels(collection, out)
    from labeler.labeling.learning import learn

    learn(collection, [GROUP])
    label_collection(collection, load_prompt_set("workshop"), groups=[GROUP])
    done = trust.accept(collection, GROUP, 0.9)
    assert done["accepted"] > 0 and done["lower_bound"] >= 0.9 and done["rebuilt_indexes"] == []  # in place
    with collection.session() as s:
        assert s.scalar(select(func.count()).select_from(ReviewEvent).where(ReviewEvent.run_id == done["run"])) \
            == done["accepted"]
    monkeypatch.setattr(queue_indexes, "BULK_ROWS", 1)  # the undo sets the queue indexes aside and builds them again
    monkeypatch.setattr(queue_indexes, "BULK_SHARE", 0.05)
    undone = trust.undo(collection, done["run"])
    assert undone["returned"] == done["accepted"]
    assert undone["rebuilt_indexes"] == [ix.name for ix in queue_indexes.QUEUE_INDEXES]
    with collection.session() as s:
        assert queue_indexes.missing(s) == []
    with collection.session() as s:
        assert s.scalar(select(func.count()).select_from(Label).where(Label.status == "auto")) == 0
    assert not (config.home / "catalog.db").exists()


def test_audit_finds_imported_labels_that_are_wrong(labeled, trust_world, tmp_path):
    collection, cli = labeled
    truth = {row["file"]: row for row in csv.DictReader((trust_world / "truth.csv").open())}
    options = sorted({row[GROUP] for row in truth.values()})
    files = sorted(truth)[:120]
    wrong = set(files[::12])  # 10 of 120, each given another colour
    rows = [{"path": str(trust_world / f), GROUP: truth[f][GROUP] if f not in wrong else
             next(o for o in options if o != truth[f][GROUP])} for f in files]
    out = tmp_path / "imported.csv"
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", GROUP])
        writer.writeheader()
        writer.writerows(rows)
    cli.json("import-labels", out)
    report = cli.json("audit", "--group", GROUP, "--limit", "120")
    assert set(report) >= {"group", "cutoff", "suspects"} and report["group"] == GROUP
    suspects = report["suspects"]
    assert set(suspects[0]) == {"image_id", "path", "group", "value", "suggested", "score", "reviewed_by"}
    scores = [x["score"] for x in suspects]
    assert scores == sorted(scores, reverse=True) and len(suspects) == 120
    top = [Path(x["path"]).name in wrong for x in suspects[:20]]
    assert sum(top) >= 6, top
    assert all(x["reviewed_by"] == "import" for x in suspects)
    flagged = [Path(x["path"]).name in wrong for x in suspects if x["score"] >= report["cutoff"]]
    assert len(flagged) == report["flagged"]  # the cutoff is one of the scores as reported and stored
    with collection.session() as s:
        assert audit.suspect_count(s, GROUP) == report["flagged"]  # and as the dashboard counts them
    assert sum(flagged) >= 5 and sum(flagged) / len(flagged) >= 3 * len(wrong) / len(files)  # thrice the base rate
    with collection.session() as s:  # the queue's suspect sort: the same order
        queue, total = review.list_labels(s, group=GROUP, sort="suspect", limit=20)
        assert total == len(statuses(collection))  # every label of the group, the audited ones first
        assert [label.image_id for label in queue] == [x["image_id"] for x in suspects[:20]]
    assert "unknown group 'nope'" in cli("audit", "--group", "nope", expect=2).output
    assert "audit needs 10 or more" in cli("audit", "--group", "concept", expect=2).output


def test_migration_0009_down_and_up_keeps_labels_and_review_events(labeled):
    import sqlalchemy as sa
    from alembic import command

    collection, _ = labeled
    with collection.session() as s:
        label = s.scalars(select(Label).where(Label.group == GROUP).order_by(Label.id)).first()
        review.decide(s, label.id, "accept", None, label.version)
        events = s.scalar(select(func.count()).select_from(ReviewEvent))
        labels = s.scalar(select(func.count()).select_from(Label))
    config = collection.config
    command.downgrade(db.alembic_config(config), "0008")
    with db.get_engine(config).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM review_events")).scalar() == events
        assert conn.execute(sa.text("SELECT count(*) FROM labels")).scalar() == labels
        columns = {row[1] for row in conn.execute(sa.text("PRAGMA table_info(labels)"))}
        assert "accept_run_id" not in columns and "suspect_score" not in columns
        events_columns = {row[1] for row in conn.execute(sa.text("PRAGMA table_info(review_events)"))}
        assert "run_id" not in events_columns and "source" not in events_columns  # 0014's column went too
    db.upgrade(config)
    with collection.session() as s:
        assert s.scalar(select(func.count()).select_from(ReviewEvent)) == events
        assert s.get(Label, label.id).status == "accepted"


def test_the_label_groups_are_found_by_jumping_through_the_index(labeled):
    """``accept``'s unknown-group check reads the groups by a loose index scan, not every label."""
    from labeler.store.stats import label_groups

    collection, _ = labeled
    with collection.session() as s:
        expected = list(s.scalars(select(Label.group).distinct().order_by(Label.group)))
        assert len(expected) > 1 and label_groups(s) == expected
        assert trust.known_groups(s) == expected
        s.execute(Label.__table__.delete())
        assert label_groups(s) == []  # an empty catalog: no groups, not [None]
        s.rollback()


def test_a_bulk_write_gets_a_large_page_cache_and_gives_it_back(indexed_collection):
    """accept's and undo's chunks run with a 256 MB page cache; the pooled connection goes back as it came."""
    from sqlalchemy import text

    with db.session_scope(indexed_collection.config) as s:
        before = s.execute(text("PRAGMA cache_size")).scalar()
        with db.bulk_page_cache(s):
            assert s.execute(text("PRAGMA cache_size")).scalar() == -db.BULK_CACHE_KIB != before
        assert s.execute(text("PRAGMA cache_size")).scalar() == before
        with pytest.raises(RuntimeError), db.bulk_page_cache(s):
            raise RuntimeError("a chunk that fails")
        assert s.execute(text("PRAGMA cache_size")).scalar() == before


def test_an_index_build_gets_a_memory_map_and_helper_threads_and_gives_them_back(indexed_collection):
    """queue_indexes.restore builds with both; the pooled connection goes back as it came."""
    from sqlalchemy import text

    def settings(s) -> tuple[int, int]:
        return s.execute(text("PRAGMA threads")).scalar(), s.execute(text("PRAGMA mmap_size")).scalar()

    with db.session_scope(indexed_collection.config) as s:
        before = settings(s)
        with db.index_build_settings(s):
            threads, mmap = settings(s)
            assert threads == min(os.cpu_count() or 1, 8) and mmap > 0 and (threads, mmap) != before
            queue_indexes.set_aside(s)
            assert queue_indexes.restore(s) == [ix.name for ix in queue_indexes.QUEUE_INDEXES]
        assert settings(s) == before
        with pytest.raises(RuntimeError), db.index_build_settings(s):
            raise RuntimeError("a build that fails")
        assert settings(s) == before
        s.rollback()
