"""Fixtures for the web tests: one labeled collection built once per session, copied per test.

The collection is 60 workshop images indexed with the real pipeline and labeled with the real
labeling code and prompt set. The model is the suite's ``model_spec`` (labeler-tiny).
Tests under ``tests/web/`` get the fixtures; they import the helpers (``login``, ``Users``...) from here.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from labeler.store import db, users
from labeler.collection import Collection
from labeler.config import Config

IMAGE_COUNT = 60
PASSWORD = "correct horse battery"
SECRET = "test-secret-key-not-for-production"


class Users:
    admin = "ada"
    reviewer = "rita"
    second = "rob"  # a second reviewer working at the same time
    evil = "<script>alert(1)</script>"


@dataclass(frozen=True)
class WebBuild:
    home: Path
    images: Path
    model: str


@pytest.fixture(scope="session")
def web_build(tmp_path_factory, model_spec: str) -> WebBuild:
    """Index and label the world once; tests get copies (``web_config``)."""
    from labeler.labeling import bulk as labeling
    from labeler.ingest import run
    from labeler.core.prompts import load_prompt_set
    from labeler.demo_world import generate_world

    root = tmp_path_factory.mktemp("web-build")
    model = model_spec
    images = generate_world(root / "images", IMAGE_COUNT, seed=7)
    images = Path(images)
    images = images.parent if images.is_file() else images
    config = Config(home=root / "home", model=model)
    collection = Collection(config)
    run.index_paths(collection, [images])
    labeling.label_collection(collection, load_prompt_set("workshop"))
    with db.session_scope(config) as s:
        users.create_user(s, Users.admin, PASSWORD, "admin")
        users.create_user(s, Users.reviewer, PASSWORD, "reviewer")
        users.create_user(s, Users.second, PASSWORD, "reviewer")
    # Fold the WAL into the main file so a plain copy of the folder is the whole catalog.
    with db.get_engine(config).connect() as conn:
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    return WebBuild(home=config.home, images=images, model=model)


@pytest.fixture
def web_config(web_build: WebBuild, tmp_path: Path) -> Config:
    home = tmp_path / "home"
    shutil.copytree(web_build.home, home, ignore=shutil.ignore_patterns("*-wal", "*-shm"))
    return Config(home=home, model=web_build.model, secret_key=SECRET)


@pytest.fixture
def app(web_config: Config):
    from labeler.web import create_app

    return create_app(web_config, {"TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def other_client(app):
    """A second browser: another reviewer's session."""
    return app.test_client()


def page_csrf(client, url: str = "/") -> str:
    """The CSRF token a page hands to its forms and scripts."""
    html = client.get(url).get_data(as_text=True)
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert match, f"no CSRF token on {url}"
    return match.group(1)


def login(client, name: str, password: str = PASSWORD) -> str:
    """Log in through the form; returns the session's CSRF token."""
    token = page_csrf(client, "/auth/login")
    response = client.post("/auth/login", data={"username": name, "password": password, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)
    return page_csrf(client, "/")


def post_json(client, url: str, body: dict, csrf: str | None = None, **headers):
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    return client.post(url, json=body, headers=headers)
