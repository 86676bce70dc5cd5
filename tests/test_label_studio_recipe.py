"""Label Studio as documented (issue 27): the export says the exact settings that serve its images,
and the way back keeps who reviewed what (``completed_by``, JSON-MIN's ``annotator``, ``--user``).

The JSON-MIN file is made by Label Studio's own converter (label-studio-sdk), from tasks annotated
as Label Studio exports them.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import socket
import subprocess

import pytest
from sqlalchemy import select

from labeler.core.prompts import load_prompt_set
from labeler.labeling.bulk import label_collection
from labeler.review import decisions, present
from labeler.store import db, users
from labeler.store.catalog import Label, User
from tests.cli import manage

WORKSHOP = load_prompt_set("workshop")


@pytest.fixture
def labeled(indexed_collection, indexed_cli):
    label_collection(indexed_collection, WORKSHOP, "mean-score")
    return indexed_collection, indexed_cli


def test_export_prints_and_writes_the_settings_that_serve_its_images(labeled, world, tmp_path):
    _, cli = labeled
    out = tmp_path / "tasks.json"
    result = cli("export", "--format", "labelstudio", out)
    parent = str(world.parent)
    assert f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={parent}" in result.output
    assert f"a Local Storage (Source Storage > Local files) at {world}" in result.output
    report = cli.json("export", "--format", "labelstudio", "--force", out)
    assert report["settings"] == {"LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
                                  "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": parent,
                                  "local_storage_path": str(world), "root": parent}
    # The URLs are relative to the document root, so they lie inside the Local Storage.
    for task in json.loads(out.read_text()):
        relative = task["data"]["image"].removeprefix("/data/local-files/?d=")
        assert os.path.join(parent, relative) == task["data"]["path"]
        assert relative.startswith(world.name + "/")
    # The file beside the export is shell the user can source, as is.
    settings = tmp_path / "tasks.label-studio.env"
    assert report["settings_file"] == str(settings)
    shown = subprocess.run(["bash", "-c", f". {shlex.quote(str(settings))} && echo \"$LABEL_STUDIO_LOCAL_FILES_"
                            "DOCUMENT_ROOT|$LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED|$LABELER_LOCAL_STORAGE_PATH\""],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert shown == f"{parent}|true|{world}"


def test_a_root_at_the_images_folder_is_refused_with_the_reason(labeled, world, tmp_path):
    _, cli = labeled
    result = cli("export", "--format", "labelstudio", "--root", world, tmp_path / "tasks.json", expect=2)
    assert "Label Studio refuses a Local Storage at its document root" in result.output
    assert not (tmp_path / "tasks.json").exists()
    # images served another way: any root, and no local-files settings
    report = cli.json("export", "--format", "labelstudio", "--root", world, "--image-url-prefix",
                      "https://files.example/", tmp_path / "tasks.json")
    assert "settings" not in report and not (tmp_path / "tasks.label-studio.env").exists()


def annotated_tasks(cli, tmp_path, completed_by: list) -> tuple[list[dict], dict[int, str]]:
    """Our export with the first tasks annotated in Label Studio, each by ``completed_by[i]``
    (as its JSON export writes it); returns the tasks and the value each annotation chose."""
    cli("export", "--format", "labelstudio", tmp_path / "tasks.json")
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    options = WORKSHOP.groups["concept"].option_names
    chosen = {}
    for i, who in enumerate(completed_by):
        task = tasks[i]
        predicted = next(r for r in task["predictions"][0]["result"] if r["from_name"] == "concept")
        value = predicted["value"]["choices"][0] if i % 2 == 0 else next(
            o for o in options if o != predicted["value"]["choices"][0])
        task["annotations"] = [{"id": 100 + i, "completed_by": who, "was_cancelled": False,
                                "created_at": "2030-01-01T00:00:00Z", "updated_at": "2030-01-01T00:00:00Z",
                                "result": [{"from_name": "concept", "to_name": "image", "type": "choices",
                                            "value": {"choices": [value]}}]}]
        chosen[task["id"]] = value
    return tasks, chosen


def reviewers_of(collection, image_ids) -> dict[int, str | None]:
    """Each image's concept reviewer as exports name it: a user's name, or a name kept as text."""
    with collection.session() as s:
        names = dict(s.execute(select(User.id, User.name)).all())
        rows = s.scalars(select(Label).where(Label.group == "concept", Label.image_id.in_(list(image_ids))))
        return {label.image_id: names.get(label.reviewed_by) if label.reviewed_by else label.reviewer_name
                for label in rows}


def test_completed_by_becomes_reviewed_by_or_is_kept_as_text(labeled, tmp_path):
    collection, cli = labeled
    with db.session_scope(collection.config) as s:
        users.create_user(s, "rita", "correct horse battery", "reviewer")
        users.create_user(s, "Rob Roe", "correct horse battery", "reviewer")
        users.create_user(s, "ada", "correct horse battery", "admin")
    # as Label Studio writes completed_by: an object with the e-mail, a user name, a bare id, and
    # reviewers no labeler user matches (an e-mail, a name)
    tasks, chosen = annotated_tasks(cli, tmp_path, [{"id": 3, "email": "rita@example.com"}, "Rob Roe", 7,
                                                    {"id": 9, "email": "nobody@example.com"}, "Zoë Quinn"])
    exported = tmp_path / "project-1.json"
    exported.write_text(json.dumps(tasks))

    refused = cli("import-labels", "--user", "bad\nname", exported, expect=2)
    assert "reviewer 'bad\\nname': holds control characters" in refused.output

    result = cli("import-labels", "--user", "ada", exported)
    assert "kept as text (no labeler user has the name): nobody@example.com, Zoë Quinn" in result.output
    ids = [t["id"] for t in tasks[:5]]
    # the bare id names no one: --user's; the names no user has are kept as they are
    assert reviewers_of(collection, ids) == {ids[0]: "rita", ids[1]: "Rob Roe", ids[2]: "ada",
                                             ids[3]: "nobody@example.com", ids[4]: "Zoë Quinn"}
    with collection.session() as s:
        for image_id, value in chosen.items():
            label = s.scalars(select(Label).where(Label.image_id == image_id, Label.group == "concept")).one()
            assert label.value == value and label.status in ("accepted", "corrected")
    # shown where reviewed_by shows: every export, the image's history, the API's label
    cli("export", tmp_path / "labels.csv")
    rows = {int(r["image_id"]): r for r in csv.DictReader((tmp_path / "labels.csv").open())}
    assert [rows[i]["concept:reviewed_by"] for i in ids] == ["rita", "Rob Roe", "ada", "nobody@example.com",
                                                             "Zoë Quinn"]
    cli("export", "--format", "labelstudio", "--force", tmp_path / "again.json")
    again = {t["id"]: t["data"]["labeler"]["concept"]["reviewed_by"] for t in json.loads((tmp_path / "again.json")
                                                                                           .read_text())}
    assert [again[i] for i in ids] == ["rita", "Rob Roe", "ada", "nobody@example.com", "Zoë Quinn"]
    with collection.session() as s:
        detail = present.image_detail(s, ids[4])
    assert [(e["user"], e["action"]) for e in detail["history"] if e["group"] == "concept"][-1] == ("Zoë Quinn",
                                                                                                   "import")
    [shown] = [lab for lab in detail["labels"] if lab["group"] == "concept"]
    assert shown["reviewed_by"] is None and shown["reviewer_name"] == "Zoë Quinn"


def test_user_with_no_labeler_account_is_kept_as_text_and_a_later_review_replaces_it(labeled, tmp_path):
    collection, cli = labeled
    cli("export", tmp_path / "labels.csv")
    rows = list(csv.DictReader((tmp_path / "labels.csv").open()))[:3]
    (tmp_path / "reviewed.csv").write_text("image_id,concept\n" + "".join(
        f"{r['image_id']},{r['concept:predicted']}\n" for r in rows))
    report = cli.json("import-labels", "--user", "Grace Hopper", tmp_path / "reviewed.csv")
    assert report["imported"] == 3 and report["reviewers"] == {"Grace Hopper": None}
    ids = [int(r["image_id"]) for r in rows]
    assert set(reviewers_of(collection, ids).values()) == {"Grace Hopper"}
    # a labeler user's decision takes the label over; the import's event keeps the name
    with db.session_scope(collection.config) as s:
        users.create_user(s, "rita", "correct horse battery", "reviewer")
    with db.session_scope(collection.config) as s:
        rita = s.scalar(select(User.id).where(User.name == "rita"))
        label = s.scalars(select(Label).where(Label.image_id == ids[0], Label.group == "concept")).one()
        decisions.decide(s, label.id, "reject", rita, label.version)
    assert reviewers_of(collection, ids) == {ids[0]: "rita", ids[1]: "Grace Hopper", ids[2]: "Grace Hopper"}
    with collection.session() as s:
        history = [(e["user"], e["action"]) for e in present.image_detail(s, ids[0])["history"]
                   if e["group"] == "concept"]
    assert history[-2:] == [("Grace Hopper", "import"), ("rita", "reject")]


def test_json_min_from_label_studios_converter_imports_with_its_annotators(labeled, tmp_path):
    pytest.importorskip("label_studio_sdk")
    from label_studio_sdk.converter import Converter

    collection, cli = labeled
    with db.session_scope(collection.config) as s:
        users.create_user(s, "rita", "correct horse battery", "reviewer")
    tasks, chosen = annotated_tasks(cli, tmp_path, [{"id": 3, "email": "rita@example.com"}] * 3)
    exported = tmp_path / "project-1.json"
    exported.write_text(json.dumps(tasks))
    config = (tmp_path / "tasks.labeling-config.xml").read_text()
    Converter(config, project_dir=None, download_resources=False).convert(
        str(exported), str(tmp_path / "min"), "JSON_MIN", is_dir=False)
    [minimal] = [p for p in (tmp_path / "min").rglob("*.json")] if (tmp_path / "min").is_dir() \
        else [tmp_path / "min"]
    rows = json.loads(minimal.read_text())
    assert rows and "data" not in rows[0]  # JSON-MIN: flat rows, not tasks

    report = cli.json("import-labels", minimal)
    assert report["format"] == "labelstudio-min" and report["groups"] == ["concept"]
    assert report["imported"] == 3 and report["unmatched"] == []
    assert report["reviewers"] == {"rita@example.com": "rita"}
    assert set(reviewers_of(collection, chosen).values()) == {"rita"}


def test_export_to_an_unreachable_label_studio_is_one_clear_line_and_writes_nothing(labeled, tmp_path):
    _, cli = labeled
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "tasks.json"
    done = manage("--home", cli.home, "--model", cli.model, "export", "--format", "labelstudio",
                  "--label-studio-url", f"http://127.0.0.1:{port}", "--token", "a.b.c", out, expect=2)
    assert done.stderr.startswith(f"error: cannot reach Label Studio at http://127.0.0.1:{port} (trading the "
                                  "personal access token for an access token): ")
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not out.exists() and not (tmp_path / "tasks.labeling-config.xml").exists()
    for args, said in [(["--label-studio-url", "localhost:8080", "--token", "t"], "is not an http(s) URL"),
                       (["--label-studio-url", "http://localhost:8080"], "go together"),
                       (["--token", "t"], "go together"),
                       (["--format", "csv", "--label-studio-url", f"http://127.0.0.1:{port}", "--token", "t"],
                        "applies to --format labelstudio only")]:
        fmt = [] if "--format" in args else ["--format", "labelstudio"]
        result = cli("export", *fmt, *args, out, expect=2)
        assert said in result.output and not out.exists()
    # LABEL_STUDIO_API_KEY alone (set for other tools) changes nothing
    done = manage("--home", cli.home, "--model", cli.model, "export", "--format", "labelstudio", out,
                  env={"LABEL_STUDIO_API_KEY": "a.b.c"}, expect=0)
    assert "Label Studio project" not in done.stdout and out.exists()
