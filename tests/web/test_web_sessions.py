"""Sessions that end on the server, disabled accounts, and login throttling, through the real app."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from labeler.store import db, users
from labeler.store.catalog import LoginFailure
from tests.cli import manage
from tests.web.conftest import PASSWORD, Users, login, page_csrf, post_json


def _first_label(client) -> dict:
    return client.get("/api/labels?limit=1").get_json()["labels"][0]


def _copy_cookie(source, target) -> None:
    """The cookie an attacker saved from ``source`` (say, off a shared machine) replayed by ``target``."""
    cookie = source.get_cookie("labeler_session")
    target.set_cookie("labeler_session", cookie.value)


def test_a_cookie_saved_before_logout_no_longer_works(client, other_client):
    csrf = login(client, Users.reviewer)
    _copy_cookie(client, other_client)
    assert other_client.get("/api/stats").status_code == 200  # the copy works while the session lives
    assert client.post("/auth/logout", data={"csrf_token": csrf}).status_code == 302

    assert other_client.get("/api/stats").status_code == 401
    label = client.get("/api/labels?limit=1")  # logged out: refused
    assert label.status_code == 401
    _copy_cookie(client, other_client)  # even re-copied after logout
    response = post_json(other_client, "/api/labels/1/review", {"action": "accept", "version": 1}, csrf=csrf)
    assert response.status_code in (400, 401)
    assert other_client.get("/").status_code == 302


def test_logout_ends_every_session_of_the_user(client, other_client, app):
    csrf = login(client, Users.reviewer)
    login(other_client, Users.reviewer)  # the same user on a second machine
    third = app.test_client()
    login(third, Users.second)  # another user is not affected
    client.post("/auth/logout", data={"csrf_token": csrf})
    assert other_client.get("/api/stats").status_code == 401
    assert third.get("/api/stats").status_code == 200
    login(client, Users.reviewer)  # logging in again works
    assert client.get("/api/stats").status_code == 200


def test_a_new_password_ends_sessions_and_the_old_password(client, web_config):
    login(client, Users.reviewer)
    changed = manage("--home", web_config.home, "user", "passwd", Users.reviewer, "--password-stdin",
                     stdin="a brand new passphrase\n")
    assert changed.returncode == 0, changed.stderr
    assert client.get("/api/stats").status_code == 401
    token = page_csrf(client, "/auth/login")
    old = client.post("/auth/login", data={"username": Users.reviewer, "password": PASSWORD, "csrf_token": token})
    assert old.status_code == 401
    login(client, Users.reviewer, "a brand new passphrase")
    assert client.get("/api/stats").status_code == 200


def test_a_disabled_account_loses_its_sessions_its_token_and_its_login(client, app, web_config):
    csrf = login(client, Users.reviewer)
    with db.session_scope(web_config) as s:
        token = users.issue_token(s, Users.reviewer)
    bearer = {"Authorization": f"Bearer {token}"}
    assert app.test_client().get("/api/stats", headers=bearer).status_code == 200
    label = _first_label(client)

    disabled = manage("--home", web_config.home, "user", "disable", Users.reviewer)
    assert disabled.returncode == 0, disabled.stderr

    assert client.get("/api/stats").status_code == 401
    review = post_json(client, f"/api/labels/{label['id']}/review", {"action": "accept", "version": label["version"]},
                       csrf=csrf)
    assert review.status_code in (400, 401)  # the session (and its CSRF token) is gone
    assert app.test_client().get("/api/stats", headers=bearer).status_code == 401
    token_page = page_csrf(client, "/auth/login")
    refused = client.post("/auth/login", data={"username": Users.reviewer, "password": PASSWORD,
                                               "csrf_token": token_page})
    assert refused.status_code == 401 and "Wrong user name or password." in refused.get_data(as_text=True)


def _try(client, name: str, password: str, address: str = "127.0.0.1"):
    token = page_csrf(client, "/auth/login")
    return client.post("/auth/login", data={"username": name, "password": password, "csrf_token": token},
                       environ_base={"REMOTE_ADDR": address})


def _age_failures(web_config, seconds: float) -> None:
    """Let ``seconds`` pass for the throttle: move every recorded failure back in time."""
    with db.session_scope(web_config) as s:
        for failure in s.scalars(select(LoginFailure)):
            failure.created_at -= timedelta(seconds=seconds)


def test_five_wrong_passwords_then_429_with_a_growing_retry_after(client, web_config):
    for _ in range(users.THROTTLE_AFTER):
        assert _try(client, Users.reviewer, "wrong password").status_code == 401
    blocked = _try(client, Users.reviewer, PASSWORD)  # even the right password must wait
    assert blocked.status_code == 429
    first_wait = int(blocked.headers["Retry-After"])
    assert 0 < first_wait <= users.THROTTLE_FIRST_S
    assert "Too many failed logins" in blocked.get_data(as_text=True)
    assert client.get("/").status_code == 302  # not logged in

    _age_failures(web_config, first_wait)
    assert _try(client, Users.reviewer, "wrong again").status_code == 401  # the sixth failure
    blocked = _try(client, Users.reviewer, PASSWORD)
    assert blocked.status_code == 429, blocked.status_code
    second_wait = int(blocked.headers["Retry-After"])
    assert second_wait > first_wait

    _age_failures(web_config, second_wait)
    assert _try(client, Users.reviewer, PASSWORD).status_code == 302  # a success resets the count
    client.post("/auth/logout", data={"csrf_token": page_csrf(client)})
    assert _try(client, Users.reviewer, "one wrong password").status_code == 401
    assert _try(client, Users.reviewer, PASSWORD).status_code == 302

    with db.session_scope(web_config) as s:  # every failure is on record, name and address
        recorded = s.execute(select(LoginFailure.name, LoginFailure.address, LoginFailure.cleared)).all()
    assert len(recorded) == users.THROTTLE_AFTER + 2
    assert all(r.name == Users.reviewer and r.address == "127.0.0.1" and r.cleared for r in recorded)


def test_made_up_names_from_one_address_never_lock_out_its_real_users(client):
    for n in range(users.THROTTLE_AFTER):
        assert _try(client, f"guess{n}", "wrong password", "10.0.0.7").status_code == 401
    assert _try(client, "guess-more", "wrong password", "10.0.0.7").status_code == 429
    # A real name with a wrong password gets the same answer: the throttle tells no one which names exist.
    wrong = _try(client, Users.reviewer, "wrong password", "10.0.0.7")
    assert wrong.status_code == 429 and int(wrong.headers["Retry-After"]) > 0
    # Behind that address (a proxy, an office) a real user still logs in.
    assert _try(client, Users.second, PASSWORD, "10.0.0.7").status_code == 302


def test_no_address_can_lock_a_name_out_for_everyone(app, client):
    for _ in range(users.THROTTLE_AFTER):
        assert _try(client, Users.admin, "wrong password", "10.0.3.1").status_code == 401
    assert _try(client, Users.admin, PASSWORD, "10.0.3.1").status_code == 429  # that address must wait
    assert _try(app.test_client(), Users.admin, PASSWORD, "10.0.3.2").status_code == 302  # the admin need not
    for n in range(users.THROTTLE_AFTER):  # one guess each from many addresses: each pair counts alone
        assert _try(client, Users.second, "wrong password", f"10.0.1.{n}").status_code == 401
    assert _try(app.test_client(), Users.second, PASSWORD, "10.0.2.1").status_code == 302


def _failed_addresses(web_config) -> list[str]:
    with db.session_scope(web_config) as s:
        return list(s.scalars(select(LoginFailure.address).order_by(LoginFailure.id)))


def test_x_forwarded_for_counts_only_from_a_trusted_proxy(web_config):
    from labeler.web import create_app

    app = create_app(web_config.with_(trusted_proxies=("10.9.0.0/24",)), {"TESTING": True})
    client = app.test_client()

    def attempt(peer: str, forwarded: str):
        token = page_csrf(client, "/auth/login")
        return client.post("/auth/login", data={"username": Users.reviewer, "password": "wrong password",
                                                "csrf_token": token},
                           headers={"X-Forwarded-For": forwarded}, environ_base={"REMOTE_ADDR": peer})

    assert attempt("10.9.0.1", "1.2.3.4").status_code == 401  # through the proxy: the client's address
    assert attempt("10.9.0.1", "6.6.6.6, 1.2.3.4").status_code == 401  # what the client wrote is ignored
    assert attempt("10.9.0.1", "1.2.3.4, 10.9.0.5").status_code == 401  # a chain of trusted proxies
    assert attempt("192.0.2.9", "1.2.3.4").status_code == 401  # not a proxy: its header means nothing
    assert _failed_addresses(web_config) == ["1.2.3.4", "1.2.3.4", "1.2.3.4", "192.0.2.9"]


def test_trusted_proxies_must_be_addresses():
    from labeler.config import Config
    from labeler.errors import ConfigError

    assert Config.from_env({"LABELER_TRUSTED_PROXIES": "10.0.0.1, 192.168.0.0/16"}).trusted_proxies == \
        ("10.0.0.1", "192.168.0.0/16")
    with pytest.raises(ConfigError, match="LABELER_TRUSTED_PROXIES must list IP addresses"):
        Config.from_env({"LABELER_TRUSTED_PROXIES": "proxy.example.com"})


def test_failed_logins_show_in_user_list(client, web_config):
    for _ in range(3):
        _try(client, Users.second, "wrong password")
    listed = manage("--home", web_config.home, "user", "list", expect=0).stdout
    assert f"{Users.second}\treviewer\tactive\tfailed logins: 3" in listed
