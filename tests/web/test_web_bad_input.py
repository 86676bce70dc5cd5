"""Bad input at the HTTP edge is a 400 that names the problem, never a 500 or a quiet guess."""

from __future__ import annotations

import pytest

from tests.web.conftest import PASSWORD, Users, login, page_csrf, post_json


def _raw_json(client, url: str, body: str, csrf: str):
    return client.post(url, data=body, content_type="application/json", headers={"X-CSRF-Token": csrf})


@pytest.mark.parametrize("target", ["/review%0d%0aX-Injected:%20yes", "/%0aSet-Cookie:%20a=b", "/review%0d"])
def test_crlf_in_next_is_a_400(client, target):
    login_page = client.get(f"/auth/login?next={target}")
    assert login_page.status_code == 400 and "next" in login_page.get_data(as_text=True)
    client.get("/auth/login")
    token = page_csrf(client, "/auth/login")
    response = client.post(f"/auth/login?next={target}",
                           data={"username": Users.reviewer, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 400
    assert "X-Injected" not in response.headers and "next must be a path" in response.get_data(as_text=True)


def test_a_backslash_next_never_leaves_the_site(client):
    token = page_csrf(client, "/auth/login")
    response = client.post("/auth/login?next=/%5Cevil.example/x",
                           data={"username": Users.reviewer, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/"


@pytest.mark.parametrize("body", [
    '{"action": "correct", "value": "\\ud800", "version": 1}',
    '{"action": "accept", "version": 1, "\\udfff": 1}',
    '{"group": "\\ud800", "threshold": 0.5}',
])
def test_a_lone_surrogate_in_json_is_a_400(client, body):
    csrf = login(client, Users.reviewer)
    label = client.get("/api/labels?limit=1").get_json()["labels"][0]
    for url in (f"/api/labels/{label['id']}/review", "/api/labels/accept-above"):
        response = _raw_json(client, url, body, csrf)
        assert response.status_code == 400, (url, response.status_code)
        assert "Unicode" in response.get_json()["error"]
    assert client.get(f"/api/labels/{label['id']}").get_json()["version"] == label["version"]


@pytest.mark.parametrize("depth", [100, 5000, 100_000])
def test_deeply_nested_json_is_a_400(client, depth):
    csrf = login(client, Users.reviewer)
    body = '{"labels": ' + "[" * depth + "]" * depth + "}"
    for url in ("/api/labels/accept-selected", "/api/labels/1/review", "/api/jobs"):
        response = _raw_json(client, url, body, csrf)
        assert response.status_code in (400, 403), (url, depth, response.status_code)
        if response.status_code == 400:
            assert "nests deeper" in response.get_json()["error"], url


@pytest.mark.parametrize("version", [1.9, True, 1.0, "1.9", "1e0", [1], {"v": 1}, None])
def test_a_version_that_is_not_a_whole_number_is_a_400(client, version):
    csrf = login(client, Users.reviewer)
    label = client.get("/api/labels?limit=1").get_json()["labels"][0]
    assert label["version"] == 1
    url = f"/api/labels/{label['id']}/review"
    response = post_json(client, url, {"action": "accept", "version": version}, csrf)
    assert response.status_code == 400 and response.get_json()["error"] == "version must be an integer"
    bulk = post_json(client, "/api/labels/accept-selected", {"labels": [{"id": label["id"], "version": version}]},
                     csrf)
    assert bulk.status_code == 400 and bulk.get_json()["error"] == "version must be an integer"
    ids = post_json(client, "/api/labels/accept-selected", {"labels": [{"id": True, "version": 1}]}, csrf)
    assert ids.status_code == 400 and ids.get_json()["error"] == "id must be an integer"
    assert client.get(f"/api/labels/{label['id']}").get_json()["status"] == "proposed"  # nothing applied
    assert post_json(client, url, {"action": "accept", "version": "1"}, csrf).status_code == 200  # a digit string is fine


def test_a_boolean_threshold_is_a_400(client):
    csrf = login(client, Users.reviewer)
    response = post_json(client, "/api/labels/accept-above", {"group": "concept", "threshold": True}, csrf)
    assert response.status_code == 400 and "threshold" in response.get_json()["error"]
