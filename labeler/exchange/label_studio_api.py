"""Label Studio's REST API: a project for an export, its Local Storage and its tasks (issue 27).

``export --format labelstudio --label-studio-url URL --token T`` writes the export as usual, then
makes, through the API, what the README's recipe makes by hand: a project whose labeling config is
the export's, a Local Storage at the images' folder (so every task image is served), and the tasks
with their predictions and annotations. The standard library's ``urllib`` is enough.

Tokens: a personal access token (what Label Studio 1.23 accepts by default) is a JWT refresh token,
traded for a short-lived access token at ``/api/token/refresh``; a legacy token (40 hex digits, off
by default since 1.19) is sent as it is. Whatever fails (the URL unreachable, the token refused, a
4xx) is a :class:`LabelStudioError` naming the step and Label Studio's own reason; a project made
before the failure is deleted again, and the message says so (or says that it is left, and which).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import urlsplit

from ..errors import LabelerError

BATCH = 1000  # tasks per import request: bounded request size, whatever the export's length
TIMEOUT = 120  # seconds per request (an import of a batch can take a while on a busy server)
REFRESH_AFTER = 240  # seconds: access tokens live 5 minutes by default; a new one before that


class LabelStudioError(LabelerError):
    """Label Studio could not be reached, refused the token, or refused a request."""


@dataclass
class LabelStudio:
    """A Label Studio server at ``url``, spoken to with ``token`` (personal access or legacy)."""

    url: str
    token: str
    timeout: float = TIMEOUT
    _access: str | None = None
    _access_at: float = 0.0
    _opener: urllib.request.OpenerDirector = field(default_factory=lambda: urllib.request.build_opener(
        urllib.request.ProxyHandler({})))  # a local server: never through a proxy from the environment

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise LabelStudioError(f"--label-studio-url: {self.url!r} is not an http(s) URL "
                                   "(e.g. http://localhost:8080)")
        self.token = self.token.strip()
        if not self.token:
            raise LabelStudioError("--token: empty; give a personal access token (Account & Settings > "
                                   "Personal Access Token)")

    @property
    def personal(self) -> bool:
        """Whether the token is a personal access token (a JWT: three dot-separated parts)."""
        return self.token.count(".") == 2

    def _authorization(self) -> str:
        if not self.personal:
            return f"Token {self.token}"
        if self._access is None or time.monotonic() - self._access_at > REFRESH_AFTER:
            answer = self._send("POST", "/api/token/refresh/", {"refresh": self.token}, auth=False,
                                step="trading the personal access token for an access token")
            access = answer.get("access") if isinstance(answer, dict) else None
            if not isinstance(access, str):
                raise LabelStudioError(f"Label Studio at {self.url} gave no access token for the personal "
                                       "access token")
            self._access, self._access_at = access, time.monotonic()
        return f"Bearer {self._access}"

    def call(self, method: str, path: str, body: object = None, step: str = "") -> object:
        """``method path`` with ``body`` as JSON; the decoded answer (None for an empty one)."""
        return self._send(method, path, body, auth=True, step=step or f"{method} {path}")

    def _send(self, method: str, path: str, body: object, auth: bool, step: str) -> object:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = self._authorization()
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with self._opener.open(request, timeout=self.timeout) as answer:
                raw = answer.read()
        except urllib.error.HTTPError as exc:
            raise LabelStudioError(self._refusal(exc, step)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise LabelStudioError(f"cannot reach Label Studio at {self.url} ({step}): {reason}") from None
        try:
            return json.loads(raw) if raw.strip() else None
        except ValueError:
            raise LabelStudioError(f"{self.url} answered {step} with something other than JSON: is it "
                                   "Label Studio?") from None

    def _refusal(self, exc: urllib.error.HTTPError, step: str) -> str:
        detail = _detail(exc)
        if exc.code in (401, 403) and (step.startswith("trading") or exc.code == 401):
            kind = "personal access token" if self.personal else "legacy token"
            hint = (" (legacy tokens are off by default since Label Studio 1.19: use a personal access token)"
                    if not self.personal else " (expired, revoked, or from another server?)")
            return f"Label Studio at {self.url} refused the {kind}{hint}: {detail}"
        return f"Label Studio at {self.url} answered {exc.code} to {step}: {detail}"


def _detail(exc: urllib.error.HTTPError) -> str:
    """Label Studio's reason for an error answer, on one line."""
    try:
        raw = exc.read()[:4000]
    except OSError:
        raw = b""
    try:
        body = json.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", "replace").strip()
        return (text.splitlines()[0][:300] if text and not text.lstrip().startswith("<") else exc.reason) or "?"
    if isinstance(body, dict):
        parts = []
        for key in ("detail", "validation_errors", "message", "non_field_errors"):
            if body.get(key):
                parts.append(_flat(body[key]))
        if not parts:
            parts = [f"{k}: {_flat(v)}" for k, v in body.items() if k not in ("id", "version", "status_code")]
        return "; ".join(parts)[:500] or str(exc.reason)
    return _flat(body)[:500]


def _flat(value: object) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_flat(v)}" for k, v in value.items())
    if isinstance(value, list):
        return " ".join(_flat(v) for v in value)
    return " ".join(str(value).split())


def check(server: LabelStudio) -> dict:
    """Who the token is at ``server`` (``{"id", "email", "username", ...}``): reaches the server and
    proves the token before anything is written."""
    whoami = server.call("GET", "/api/current-user/whoami", step="checking the token")
    if not isinstance(whoami, dict) or "id" not in whoami:
        raise LabelStudioError(f"{server.url} did not answer like Label Studio (GET /api/current-user/whoami)")
    return whoami


def annotators(server: LabelStudio) -> dict[int, str]:
    """Label Studio's users by id: their e-mail (else user name). Its exports name annotators by id."""
    users = server.call("GET", "/api/users", step="listing its users (to name annotators)")
    if isinstance(users, dict):  # a paginated answer
        users = users.get("results") or []
    return {u["id"]: (u.get("email") or u.get("username") or "").strip() for u in users or []
            if isinstance(u, dict) and isinstance(u.get("id"), int) and (u.get("email") or u.get("username"))}


def send_export(server: LabelStudio, export: dict, title: str,
                progress: Callable[[int], None] | None = None) -> dict:
    """:func:`create_project` for an ``export --format labelstudio`` report: its tasks file, its
    labeling config, and (serving local files) its Local Storage path."""
    path = Path(export["path"])
    with path.open(encoding="utf-8") as fh:
        tasks = json.load(fh)
    config = Path(export["config"]).read_text(encoding="utf-8")
    storage = (export.get("settings") or {}).get("local_storage_path")
    return create_project(server, title, config, tasks, storage, progress)


def create_project(server: LabelStudio, title: str, label_config: str, tasks: Sequence[dict],
                   storage_path: str | None, progress: Callable[[int], None] | None = None) -> dict:
    """A project named ``title`` with ``label_config``, a Local Storage at ``storage_path`` (None:
    the images are served elsewhere) and ``tasks`` imported ``BATCH`` at a time; returns
    ``{"url", "project", "project_url", "storage", "tasks", "annotations", "predictions"}``.
    ``progress`` gets the number of tasks each batch imported.

    On any failure the project is deleted again, and the :class:`LabelStudioError` says so.
    """
    project = server.call("POST", "/api/projects", {"title": title[:50], "label_config": label_config},
                          step="creating the project")
    if not isinstance(project, dict) or not isinstance(project.get("id"), int):
        raise LabelStudioError(f"Label Studio at {server.url} made no project (its answer had no id)")
    pid = project["id"]
    report = {"url": server.url, "project": pid, "project_url": f"{server.url}/projects/{pid}/data",
              "storage": None, "tasks": 0, "annotations": 0, "predictions": 0}
    try:
        if storage_path is not None:
            storage = server.call("POST", "/api/storages/localfiles",
                                  {"project": pid, "title": "labeler images", "path": storage_path,
                                   "use_blob_urls": False, "regex_filter": ""},
                                  step=f"adding the Local Storage {storage_path}")
            report["storage"] = storage.get("id") if isinstance(storage, dict) else None
        for start in range(0, len(tasks), BATCH):
            batch = [_importable(task) for task in tasks[start:start + BATCH]]
            answer = server.call("POST", f"/api/projects/{pid}/import", batch,
                                 step=f"importing tasks {start + 1}-{start + len(batch)}")
            answer = answer if isinstance(answer, dict) else {}
            for key, name in (("tasks", "task_count"), ("annotations", "annotation_count"),
                              ("predictions", "prediction_count")):
                report[key] += int(answer.get(name) or 0)
            if progress is not None:
                progress(len(batch))
    except LabelStudioError as exc:
        raise LabelStudioError(f"{exc}; {_undo(server, pid)}") from None
    return report


def _importable(task: dict) -> dict:
    """A task as Label Studio's import takes it: its own ids are Label Studio's to give (ours stay in
    ``data.image_id``)."""
    return {key: value for key, value in task.items() if key != "id"}


def _undo(server: LabelStudio, pid: int) -> str:
    """Delete project ``pid`` after a failure; says what became of it."""
    try:
        server.call("DELETE", f"/api/projects/{pid}", step=f"deleting project {pid}")
    except LabelStudioError as exc:
        return f"project {pid} is left half-made at {server.url}/projects/{pid} (delete it by hand: {exc})"
    return f"the project it had made (id {pid}) was deleted again"
