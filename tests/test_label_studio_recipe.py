"""Label Studio as documented (issue 27): the export says the exact settings that serve its images,
and the way back keeps who reviewed what (``completed_by``, JSON-MIN's ``annotator``, ``--user``).

The JSON-MIN file is made by Label Studio's own converter (label-studio-sdk), from tasks annotated
as Label Studio exports them.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess

import pytest
from sqlalchemy import select

from labeler.core.prompts import load_prompt_set
from labeler.labeling.bulk import label_collection
from labeler.store import db, users
from labeler.store.catalog import Label, User

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
    with collection.session() as s:
        names = dict(s.execute(select(User.id, User.name)).all())
        rows = s.scalars(select(Label).where(Label.group == "concept", Label.image_id.in_(list(image_ids))))
        return {label.image_id: names.get(label.reviewed_by) for label in rows}


def test_completed_by_becomes_reviewed_by(labeled, tmp_path):
    collection, cli = labeled
    with db.session_scope(collection.config) as s:
        users.create_user(s, "rita", "correct horse battery", "reviewer")
        users.create_user(s, "Rob Roe", "correct horse battery", "reviewer")
        users.create_user(s, "ada", "correct horse battery", "admin")
    # as Label Studio writes completed_by: an object with the e-mail, a user name, a bare id
    tasks, chosen = annotated_tasks(cli, tmp_path, [{"id": 3, "email": "rita@example.com"}, "Rob Roe", 7,
                                                    {"id": 9, "email": "nobody@example.com"}])
    exported = tmp_path / "project-1.json"
    exported.write_text(json.dumps(tasks))

    refused = cli("import-labels", "--user", "nobody-here", exported, expect=2)
    assert "--user: no user named 'nobody-here'" in refused.output

    report = cli.json("import-labels", "--user", "ada", exported)
    assert report["imported"] == 4
    assert report["reviewers"] == {"rita@example.com": "rita", "Rob Roe": "Rob Roe", "nobody@example.com": None}
    ids = [t["id"] for t in tasks[:4]]
    assert reviewers_of(collection, ids) == {ids[0]: "rita", ids[1]: "Rob Roe", ids[2]: "ada", ids[3]: "ada"}
    with collection.session() as s:
        for image_id, value in chosen.items():
            label = s.scalars(select(Label).where(Label.image_id == image_id, Label.group == "concept")).one()
            assert label.value == value and label.status in ("accepted", "corrected")


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
