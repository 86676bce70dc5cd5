"""Round trips that never lose a review: an older export re-imported skips the labels reviewed
since (``newer_review``), and the web takes a value only under the rules import-labels applies."""

from __future__ import annotations

import csv
import json

from labeler.collection import Collection
from labeler.exchange.export import export_labels
from labeler.exchange.importing import import_labels
from tests.cli import manage
from tests.web.conftest import Users, login, post_json


def _correct(client, csrf, label_id: int, value: str):
    label = client.get(f"/api/labels/{label_id}").get_json()
    return post_json(client, f"/api/labels/{label_id}/review",
                     {"action": "correct", "value": value, "version": label["version"]}, csrf)


def test_an_older_export_reimported_skips_what_was_reviewed_since(client, web_config, tmp_path):
    csrf = login(client, Users.reviewer)
    labels = client.get("/api/labels?group=concept&limit=3").get_json()["labels"]
    first, second, untouched = labels
    assert _correct(client, csrf, first["id"], "saw").status_code == 200
    assert _correct(client, csrf, second["id"], "wrench").status_code == 200
    old = tmp_path / "old.csv"
    export_labels(Collection(web_config), "csv", old, groups=["concept"])
    rows = list(csv.DictReader(old.open(encoding="utf-8")))
    assert "concept:version" in rows[0]
    # After the export, a second reviewer changes the first label again.
    csrf = login(client, Users.second)
    assert _correct(client, csrf, first["id"], "pliers").status_code == 200

    report = import_labels(Collection(web_config), old, ["concept"])
    assert report["skipped"].get("newer_review") == 1
    assert client.get(f"/api/labels/{first['id']}").get_json()["value"] == "pliers"  # the newer review stands
    assert client.get(f"/api/labels/{second['id']}").get_json()["value"] == "wrench"
    assert client.get(f"/api/labels/{untouched['id']}").get_json()["status"] == "proposed"

    done = manage("--home", web_config.home, "import-labels", old, "--group", "concept", "--overwrite-newer",
                  "--json", expect=0)
    forced = json.loads(done.stdout)
    assert "newer_review" not in forced["skipped"] and forced["corrected"] >= 1
    assert client.get(f"/api/labels/{first['id']}").get_json()["value"] == "saw"  # asked for: done


def test_the_web_refuses_values_import_would_refuse_and_stores_nfc(client, web_config, tmp_path):
    csrf = login(client, Users.reviewer)
    label = client.get("/api/labels?group=concept&limit=1").get_json()["labels"][0]
    for bad, reason in (("ham\x00mer", "control characters"), ("line\nbreak", "control characters"),
                        ("esc\x1b[31m", "control characters"), ("abc\u202edef", "bidirectional"),
                        ("ham\u200bmer", "invisible formatting"), ("h\u0430mmer", "looks like the option 'hammer'")):
        refused = _correct(client, csrf, label["id"], bad)
        assert refused.status_code == 400, bad
        assert reason in refused.get_json()["error"], (bad, refused.get_json())
    assert client.get(f"/api/labels/{label['id']}").get_json()["version"] == label["version"]  # nothing written

    assert _correct(client, csrf, label["id"], "cafe\u0301 tool").status_code == 200  # decomposed é
    assert client.get(f"/api/labels/{label['id']}").get_json()["value"] == "caf\u00e9 tool"
    out = tmp_path / "out.csv"
    export_labels(Collection(web_config), "csv", out, groups=["concept"])
    report = import_labels(Collection(web_config), out, ["concept"], allow_new_values=True)
    assert report["unchanged"] >= 1 and report["imported"] == 0  # what the web stored comes back as it is


def test_import_refuses_a_look_alike_of_an_option(client, web_config, tmp_path):
    login(client, Users.reviewer)
    label = client.get("/api/labels?group=concept&limit=1").get_json()["labels"][0]
    path = tmp_path / "fake.csv"
    path.write_text(f"image_id,concept\n{label['image_id']},h\u0430mmer\n", encoding="utf-8")
    done = manage("--home", web_config.home, "import-labels", path, "--allow-new-values", expect=2)
    assert done.stderr.strip() == (f"error: {path}: concept: 'h\u0430mmer' looks like the option 'hammer' but is "
                                   "other text (look-alike letters); nothing imported")
