"""Accounts at the HTTP edge: the login gate, sessions, CSRF, API tokens, roles and cookies."""

from __future__ import annotations

from labeler.store import db, users
from tests.web.conftest import PASSWORD, Users, login, page_csrf, post_json

PAGES = ["/", "/review", "/search?q=hammer", "/images/1", "/images/1/thumb", "/images/1/full", "/images/1/view", "/lab"]
API = ["/api/stats", "/api/labels", "/api/labels/1", "/api/images/1", "/api/search?q=hammer",
       "/api/images/1/similar", "/api/labels/accept-above?group=concept&threshold=0.5"]


def test_every_page_and_image_needs_a_login(client):
    for url in PAGES:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.headers["Location"].startswith("/auth/login?next="), url


def test_every_api_route_needs_a_login_and_answers_json(client):
    for url in API:
        response = client.get(url)
        assert response.status_code == 401, url
        assert "log in" in response.get_json()["error"]


def test_login_with_a_wrong_password_is_refused_without_saying_which_part(client):
    token = page_csrf(client, "/auth/login")
    response = client.post("/auth/login", data={"username": Users.reviewer, "password": "nope nope", "csrf_token": token})
    assert response.status_code == 401
    assert "Wrong user name or password." in response.get_data(as_text=True)
    response = client.post("/auth/login", data={"username": "nobody", "password": PASSWORD, "csrf_token": token})
    assert "Wrong user name or password." in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_login_then_logout(client):
    csrf = login(client, Users.reviewer)
    page = client.get("/")
    assert page.status_code == 200
    assert f"{Users.reviewer} (reviewer)" in page.get_data(as_text=True)
    assert client.post("/auth/logout", data={"csrf_token": csrf}).status_code == 302
    assert client.get("/").status_code == 302


def test_login_redirects_back_but_never_off_site(client):
    token = page_csrf(client, "/auth/login")
    response = client.post("/auth/login?next=/review", data={"username": Users.reviewer, "password": PASSWORD,
                                                              "csrf_token": token})
    assert response.headers["Location"] == "/review"
    client.post("/auth/logout", data={"csrf_token": page_csrf(client)})
    token = page_csrf(client, "/auth/login")
    response = client.post("/auth/login?next=//evil.example/x", data={"username": Users.reviewer,
                                                                     "password": PASSWORD, "csrf_token": token})
    assert response.headers["Location"] == "/"


def test_login_form_without_csrf_token_is_refused(client):
    client.get("/auth/login")
    response = client.post("/auth/login", data={"username": Users.reviewer, "password": PASSWORD})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_state_changes_need_the_csrf_token(client):
    csrf = login(client, Users.reviewer)
    label = client.get("/api/labels?limit=1").get_json()["labels"][0]
    body = {"action": "accept", "version": label["version"]}
    missing = post_json(client, f"/api/labels/{label['id']}/review", body)
    assert missing.status_code == 400 and "CSRF" in missing.get_json()["error"]
    wrong = post_json(client, f"/api/labels/{label['id']}/review", body, csrf="forged")
    assert wrong.status_code == 400
    assert client.get(f"/api/labels/{label['id']}").get_json()["status"] == "proposed"
    assert client.post("/auth/logout").status_code == 400  # logout too: no forced logout from other sites
    ok = post_json(client, f"/api/labels/{label['id']}/review", body, csrf=csrf)
    assert ok.status_code == 200 and ok.get_json()["label"]["status"] == "accepted"


def test_api_token_works_without_cookie_or_csrf_and_a_bad_one_is_refused(app, web_config):
    with db.session_scope(web_config) as s:
        token = users.issue_token(s, Users.reviewer)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/stats", headers=headers).status_code == 200
    label = client.get("/api/labels?limit=1", headers=headers).get_json()["labels"][0]
    response = client.post(f"/api/labels/{label['id']}/review", headers=headers,
                           json={"action": "reject", "version": label["version"]})
    assert response.status_code == 200
    assert response.get_json()["label"]["status"] == "rejected"
    bad = client.get("/api/stats", headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401 and bad.get_json()["error"] == "invalid API token"


def test_reissuing_a_token_revokes_the_old_one(app, web_config):
    with db.session_scope(web_config) as s:
        old = users.issue_token(s, Users.reviewer)
        new = users.issue_token(s, Users.reviewer)
    client = app.test_client()
    assert client.get("/api/stats", headers={"Authorization": f"Bearer {old}"}).status_code == 401
    assert client.get("/api/stats", headers={"Authorization": f"Bearer {new}"}).status_code == 200


def test_only_admins_reach_the_prompt_lab(client, other_client):
    login(client, Users.reviewer)
    assert client.get("/lab").status_code == 403
    assert "only admins" in client.get("/lab").get_data(as_text=True)
    csrf = page_csrf(client)
    for url in ("/lab/preview", "/lab/save", "/lab/label"):
        response = client.post(url, data={"csrf_token": csrf, "set": "workshop", "group": "concept",
                                          "option": "hammer", "prompts": "a hammer"})
        assert response.status_code == 403, url
    assert "Prompt lab" not in client.get("/").get_data(as_text=True)
    login(other_client, Users.admin)
    assert other_client.get("/lab").status_code == 200
    assert "Prompt lab" in other_client.get("/").get_data(as_text=True)


def test_session_cookie_is_httponly_and_samesite_lax(client):
    token = page_csrf(client, "/auth/login")
    response = client.post("/auth/login", data={"username": Users.reviewer, "password": PASSWORD, "csrf_token": token})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # http://127.0.0.1 by default; LABELER_SECURE_COOKIES=1 behind HTTPS


def test_secure_cookies_can_be_switched_on(web_config, monkeypatch):
    from labeler.config import Config
    from labeler.web import create_app

    monkeypatch.setenv("LABELER_SECURE_COOKIES", "1")
    assert Config.from_env().secure_cookies is True  # the environment reaches the app through Config
    assert create_app(web_config.with_(secure_cookies=True)).config["SESSION_COOKIE_SECURE"] is True
    monkeypatch.setenv("LABELER_SECURE_COOKIES", "off")
    assert Config.from_env().secure_cookies is False


def test_secret_key_is_generated_once_and_private(tmp_path):
    from labeler.config import Config
    from labeler.web import load_secret_key

    config = Config(home=tmp_path / "h")
    first = load_secret_key(config)
    assert len(first) == 64
    assert load_secret_key(config) == first
    assert (config.home / "secret_key").stat().st_mode & 0o777 == 0o600
    assert load_secret_key(Config(home=tmp_path / "h", secret_key="from-env")) == "from-env"
