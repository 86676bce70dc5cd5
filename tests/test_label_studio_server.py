"""The Label Studio round trip against a real Label Studio 1.23 server (issue 27).

Label Studio lives in a venv of its own (``.venv-labelstudio/``, made by ``scripts/setup.sh
--test``; or ``LABELER_LABEL_STUDIO_BIN``). One server is started for the module, the README's way:
our export first, then ``label-studio start`` in a shell that sourced the settings file the export
wrote (so with the document root the export chose). Its users and their personal access tokens are
made the way a person makes them: an admin from ``LABEL_STUDIO_USERNAME``/``PASSWORD``, a second
reviewer signed up through the organization's invite link, each token from ``/api/token/``.
"""

from __future__ import annotations

import http.client
import http.cookiejar
import json
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from labeler.collection import Collection
from labeler.config import Config
from labeler.core.prompts import load_prompt_set
from labeler.exchange.label_studio_api import LabelStudio
from labeler.labeling.bulk import label_collection
from labeler.review import decisions
from labeler.store import db, users
from labeler.store.catalog import ImageFile, Label, User
from tests.cli import ROOT, Cli, manage

pytestmark = pytest.mark.slow  # a real Label Studio: its start alone takes half a minute or more

WORKSHOP = load_prompt_set("workshop")
PASSWORD = "correct-horse-battery-9"
START_TIMEOUT = 420  # seconds: the first start migrates its database


def label_studio_bin() -> Path:
    found = Path(os.environ.get("LABELER_LABEL_STUDIO_BIN", ROOT / ".venv-labelstudio" / "bin" / "label-studio"))
    if not found.exists():
        pytest.skip(f"Label Studio's venv is missing ({found}): run scripts/setup.sh --test")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """A person at Label Studio's pages: cookies, CSRF, forms (to sign up, log in and make a token)."""

    def __init__(self, base: str):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar),
                                                  urllib.request.ProxyHandler({}))

    def _csrf(self) -> str:
        return next(c.value for c in self.jar if c.name == "csrftoken")

    def submit(self, path: str, fields: dict) -> str:
        """GET the form at ``path``, POST ``fields`` back; the URL it ended on."""
        self.opener.open(self.base + path, timeout=60).read()
        data = urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": self._csrf()}).encode()
        with self.opener.open(urllib.request.Request(self.base + path, data=data,
                                                     headers={"Referer": self.base + path}), timeout=60) as answer:
            return answer.geturl()

    def personal_access_token(self) -> str:
        request = urllib.request.Request(self.base + "/api/token/", data=b"{}", method="POST",
                                         headers={"Content-Type": "application/json", "X-CSRFToken": self._csrf(),
                                                  "Referer": self.base + "/"})
        with self.opener.open(request, timeout=60) as answer:
            return json.loads(answer.read())["token"]


def reviewed_world(home: Path, model_spec: str) -> Collection:
    """The world labeled, with a few labels reviewed by a labeler user (rita) and a few imported
    with a reviewer no labeler user has (kept as text): their names must survive Label Studio."""
    collection = Collection(Config(home=home, model=model_spec))
    label_collection(collection, WORKSHOP, "mean-score")
    with db.session_scope(collection.config) as s:
        users.create_user(s, "rita", PASSWORD, "reviewer")
        users.create_user(s, "rob", PASSWORD, "reviewer")
    with db.session_scope(collection.config) as s:
        rita = s.scalar(select(User.id).where(User.name == "rita"))
        labels = list(s.scalars(select(Label).where(Label.group == "concept").order_by(Label.image_id)))
        for label in labels[:3]:
            decisions.decide(s, label.id, "accept", rita, label.version)
    cli = Cli(home, model_spec)
    (home.parent / "grace.csv").write_text("image_id,concept\n" + "".join(
        f"{label.image_id},{label.predicted}\n" for label in labels[3:6]))
    cli("import-labels", "--user", "Grace Hopper", home.parent / "grace.csv")
    return collection


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory, indexed_home, model_spec):
    """Our export, and a Label Studio started with the settings it wrote; yields a dict of what the
    tests share: ``cli``, ``collection``, ``export`` (its report), ``base``, ``tokens`` (per e-mail)."""
    binary = label_studio_bin()
    place = tmp_path_factory.mktemp("labelstudio")
    home = place / "home"
    shutil.copytree(indexed_home, home)
    collection = reviewed_world(home, model_spec)
    cli = Cli(home, model_spec)
    started = time.monotonic()
    printed = cli("export", "--format", "labelstudio", place / "tasks.json").output
    export = cli.json("export", "--format", "labelstudio", "--force", place / "tasks.json")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LABEL_STUDIO_USERNAME": "admin@example.com", "LABEL_STUDIO_PASSWORD": PASSWORD,
           # its own key: Label Studio's generated one can start with "$", which it then fails to read back
           "SECRET_KEY": secrets.token_hex(32), "LATEST_VERSION_CHECK": "false",
           "PATH": f"{binary.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for key in [k for k in env if k.startswith("LABEL_STUDIO_LOCAL_FILES")]:
        del env[key]  # only the settings file's, as the README says
    template = binary.parent.parent / "data-template"
    if (template / "label_studio.sqlite3").exists():  # migrated by scripts/setup.sh: a start in seconds
        shutil.copytree(template, place / "data")
    log = (place / "label-studio.log").open("w")
    # The README's recipe, to the letter: source the settings the export wrote, then start.
    process = subprocess.Popen(["bash", "-c", f". {shlex.quote(export['settings_file'])} && exec label-studio start "
                                f"--no-browser --port {port} --data-dir {shlex.quote(str(place / 'data'))}"],
                               env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_healthy(base, process, place / "label-studio.log")
        admin = Browser(base)
        assert admin.submit("/user/login/", {"email": "admin@example.com", "password": PASSWORD}).rstrip("/") != \
            base + "/user/login"
        tokens = {"admin@example.com": admin.personal_access_token()}
        invite = LabelStudio(base, tokens["admin@example.com"]).call("GET", "/api/invite")["invite_url"]
        rob = Browser(base)
        rob.submit(invite.replace(base, ""), {"email": "rob@example.com", "password": PASSWORD})
        tokens["rob@example.com"] = rob.personal_access_token()
        yield {"cli": cli, "collection": collection, "export": export, "printed": printed, "base": base,
               "tokens": tokens, "place": place, "started": started}
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
        log.close()


def _wait_healthy(base: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    port = int(base.rsplit(":", 1)[1])
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"Label Studio exited {process.returncode}: {log.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"Label Studio did not answer /health in {START_TIMEOUT} s: {log.read_text()[-3000:]}")


def reviewer_names(collection: Collection) -> dict[int, str | None]:
    """Each concept label's reviewer, by image: a user's name or a name kept as text."""
    with collection.session() as s:
        names = dict(s.execute(select(User.id, User.name)).all())
        return {label.image_id: names.get(label.reviewed_by) if label.reviewed_by else label.reviewer_name
                for label in s.scalars(select(Label).where(Label.group == "concept", Label.status != "proposed"))}


def test_label_studio_server(label_studio, world, indexed_home, model_spec, tmp_path, request):
    """One test, so that one server serves it all, whichever xdist worker runs it."""
    rest_export_serves_every_image_and_the_round_trip_keeps_every_reviewer(label_studio, world)
    json_min_into_a_fresh_home_keeps_every_reviewer(label_studio, indexed_home, model_spec, tmp_path / "fresh")
    a_refused_token_or_a_refused_storage_is_one_line_and_leaves_no_project(label_studio, tmp_path / "refused",
                                                                            model_spec, request)


def rest_export_serves_every_image_and_the_round_trip_keeps_every_reviewer(ls: dict, world: Path) -> None:
    cli, export = ls["cli"], ls["export"]
    base, tokens = ls["base"], ls["tokens"]
    # The printed settings are the ones the server runs with: the document root is the photos' parent.
    assert f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={world.parent}" in ls["printed"]
    assert export["settings"]["local_storage_path"] == str(world)

    # export --label-studio-url: the project, its Local Storage and the tasks, through the REST API
    made = cli.json("export", "--format", "labelstudio", "--force", "--label-studio-url", base,
                    "--token", tokens["admin@example.com"], "--project-title", "workshop", ls["place"] / "tasks.json")
    sent = made["label_studio"]
    assert sent["tasks"] == made["images"] == len(json.loads((ls["place"] / "tasks.json").read_text()))
    assert sent["storage"] is not None and sent["predictions"] == made["images"] and sent["annotations"] == 6
    admin = LabelStudio(base, tokens["admin@example.com"])
    project = admin.call("GET", f"/api/projects/{sent['project']}")
    assert project["title"] == "workshop" and '<Choices name="concept"' in project["label_config"]
    storages = admin.call("GET", f"/api/storages/localfiles?project={sent['project']}")
    assert [s["path"] for s in storages] == [str(world)]

    # 100% of task images answer 200 from Label Studio, with the image's own bytes
    tasks = admin.call("GET", f"/api/projects/{sent['project']}/export?exportType=JSON&download_all_tasks=true")
    assert len(tasks) == sent["tasks"]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    served = 0
    for task in tasks:
        request = urllib.request.Request(base + task["data"]["image"],
                                         headers={"Authorization": admin._authorization()})
        with opener.open(request, timeout=60) as answer:
            assert answer.status == 200
            assert answer.read() == Path(task["data"]["path"]).read_bytes()
            served += 1
    assert served == len(tasks)

    # Two Label Studio users annotate tasks no one reviewed yet: admin (no labeler user: kept as text)
    # and rob (the labeler user of his e-mail's local part).
    before = reviewer_names(ls["collection"])
    fresh = [t for t in tasks if not t["annotations"]]
    options = WORKSHOP.groups["concept"].option_names
    chosen = {}
    for i, task in enumerate(fresh[:4]):
        who = "rob@example.com" if i % 2 else "admin@example.com"
        predicted = task["data"]["labeler"]["concept"]["predicted"]
        value = predicted if i < 2 else next(o for o in options if o != predicted)  # accepted, then corrected
        LabelStudio(base, tokens[who]).call("POST", f"/api/tasks/{task['id']}/annotations", {
            "result": [{"from_name": "concept", "to_name": "image", "type": "choices", "value": {"choices": [value]}}]})
        chosen[task["data"]["image_id"]] = (value, "rob" if who.startswith("rob") else "admin@example.com")

    # Label Studio's exports name annotators by user id: import-labels asks the server for their names.
    for kind in ("JSON", "JSON_MIN"):
        answer = admin.call("GET", f"/api/projects/{sent['project']}/export?exportType={kind}")
        (ls["place"] / f"{kind}.json").write_text(json.dumps(answer))
    report = cli.json("import-labels", "--label-studio-url", base, "--token", tokens["admin@example.com"],
                      ls["place"] / "JSON.json")
    assert report["format"] == "labelstudio" and report["imported"] == 4 and report["unnamed_annotators"] == 0
    after = reviewer_names(ls["collection"])
    with ls["collection"].session() as s:
        values = dict(s.execute(select(Label.image_id, Label.value).where(Label.group == "concept")).all())
    for image_id, (value, who) in chosen.items():
        assert (values[image_id], after[image_id]) == (value, who)
    # every review made before the trip keeps its reviewer: rita (a user) and Grace Hopper (text)
    assert {i: after[i] for i in before} == before
    assert sorted(set(before.values())) == ["Grace Hopper", "rita"]

    # JSON-MIN the same way: nothing changed since, every name as it was
    again = cli.json("import-labels", "--label-studio-url", base, "--token", tokens["admin@example.com"],
                     ls["place"] / "JSON_MIN.json")
    assert again["format"] == "labelstudio-min" and again["imported"] == 0 and again["unchanged"] == 10
    assert reviewer_names(ls["collection"]) == after


def json_min_into_a_fresh_home_keeps_every_reviewer(ls: dict, indexed_home: Path, model_spec: str,
                                                    tmp_path: Path) -> None:
    """A home that never saw these reviews: names come from the export's own provenance (ours) and
    from Label Studio's users (theirs)."""
    home = tmp_path / "home"
    shutil.copytree(indexed_home, home)
    fresh = Collection(Config(home=home, model=model_spec))
    label_collection(fresh, WORKSHOP, "mean-score")
    with db.session_scope(fresh.config) as s:
        users.create_user(s, "rita", PASSWORD, "reviewer")
        users.create_user(s, "rob", PASSWORD, "reviewer")
    cli = Cli(home, model_spec)
    for kind in ("JSON_MIN", "JSON"):
        cli.json("import-labels", "--label-studio-url", ls["base"], "--token", ls["tokens"]["rob@example.com"],
                 ls["place"] / f"{kind}.json")
        names = reviewer_names(fresh)
        assert names == reviewer_names(ls["collection"]), kind


def a_refused_token_or_a_refused_storage_is_one_line_and_leaves_no_project(ls: dict, tmp_path: Path, model_spec: str,
                                                                           request) -> None:
    tmp_path.mkdir()
    cli = ls["cli"]
    admin = LabelStudio(ls["base"], ls["tokens"]["admin@example.com"])
    # what a person reads when it works: the project, its size, its storage and where to open it
    said = cli("export", "--format", "labelstudio", "--label-studio-url", ls["base"], "--token",
               ls["tokens"]["rob@example.com"], tmp_path / "ok.json").output
    made = admin.call("GET", "/api/projects?ordering=-id")["results"][0]
    assert made["title"] == "labeler ok" and made["task_number"] == ls["export"]["images"]
    assert (f"created Label Studio project {made['id']} with {made['task_number']} tasks "
            f"({made['task_number']} predictions, {len(reviewer_names(ls['collection']))} annotations) "
            "and Local Storage ") in said
    assert said.rstrip().endswith(f": {ls['base']}/projects/{made['id']}/data")
    projects = admin.call("GET", "/api/projects")["count"]
    refused = manage("--home", cli.home, "--model", model_spec, "export", "--format", "labelstudio",
                     "--label-studio-url", ls["base"], "--token", "0123456789abcdef0123456789abcdef01234567",
                     tmp_path / "a.json", expect=2)
    assert refused.stderr.startswith(f"error: Label Studio at {ls['base']} refused the legacy token")
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "a.json").exists()
    token = ls["tokens"]["admin@example.com"]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    refused = cli("export", "--format", "labelstudio", "--label-studio-url", ls["base"], "--token", forged,
                  tmp_path / "b.json", expect=2)
    assert "refused the personal access token" in refused.output and not (tmp_path / "b.json").exists()

    # The photos moved outside the server's document root: Label Studio refuses the Local Storage
    # (a 400); the project made just before is deleted again, and the one line says all of it.
    elsewhere = Path(tempfile.mkdtemp(prefix="labeler-moved-"))  # outside pytest's folder: the document root
    request.addfinalizer(lambda: shutil.rmtree(elsewhere, ignore_errors=True))
    moved = elsewhere / "photos"
    shutil.copytree(Path(ls["export"]["settings"]["local_storage_path"]), moved)
    home = tmp_path / "home"
    shutil.copytree(cli.home, home)
    with db.session_scope(Config(home=home, model=model_spec)) as s:
        s.execute(update(ImageFile).values(path=func.replace(ImageFile.path, ls["export"]["settings"]
                                                             ["local_storage_path"], str(moved))))
    db.dispose_engines()
    done = manage("--home", home, "--model", model_spec, "export", "--format", "labelstudio",
                  "--label-studio-url", ls["base"], "--token", token, tmp_path / "c.json", expect=2)
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert f"answered 400 to adding the Local Storage {moved}" in line
    assert "was deleted again" in line and f"(the export itself is written: {tmp_path / 'c.json'})" in line
    assert admin.call("GET", "/api/projects")["count"] == projects
