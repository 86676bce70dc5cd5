"""Preferences per user, stored in the catalog: theme, density and the user's own keys, validated
(unknown preferences and actions, reserved browser keys and keys bound twice are refused with a
message naming them, and nothing is stored); the pages, their help and their key table follow them."""

from __future__ import annotations

import json
import re

import pytest

from tests.web.conftest import Users, login, page_csrf


def _put(client, csrf, body):
    return client.put("/api/preferences", json=body, headers={"X-CSRF-Token": csrf})


def _page_data(html: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="review-data">(.*?)</script>', html, re.S).group(1))


@pytest.mark.parametrize("body, named", [
    ({"colour": "dark"}, "unknown preference 'colour'"),
    ({"theme": "sepia"}, "theme: 'sepia'"),
    ({"density": "xl"}, "density: 'xl'"),
    ({"keys": {"frobnicate": "z"}}, "unknown action 'frobnicate'"),
    ({"keys": {"accept": "Ctrl+W"}}, "keys.accept: Ctrl+W is reserved by the browser"),
    ({"keys": {"skip": "F5"}}, "keys.skip: F5 is reserved by the browser"),
    ({"keys": {"skip": "Tab"}}, "keys.skip: 'Tab' is reserved"),
    ({"keys": {"accept": "j"}}, "'j' would do next and accept"),
    ({"keys": {"accept": ";", "skip": ";"}}, "';' would do accept and skip"),
    ({"keys": {"accept": "q"}}, "'q' would do option key q (correct to an option) and accept"),
    ({"keys": {"accept": "Y"}}, "write a capital letter as 'Shift+Y'"),
    ({"keys": {"accept": "Hyper+x"}}, "not a key the pages can bind"),
    ({"keys": ["accept"]}, "keys must be an object"),
])
def test_refused_preferences_name_what_is_wrong_and_store_nothing(client, body, named):
    csrf = login(client, Users.reviewer)
    answer = _put(client, csrf, body)
    assert answer.status_code == 400 and named in answer.get_json()["error"], answer.get_json()
    assert client.get("/api/preferences").get_json()["preferences"] == {"theme": "system", "density": "m", "keys": {}}


def test_stored_preferences_drive_the_theme_the_density_and_the_keys(client, other_client):
    csrf = login(client, Users.reviewer)
    login(other_client, Users.second)
    assert 'data-theme="system"' in client.get("/").get_data(as_text=True)  # follows prefers-color-scheme
    answer = _put(client, csrf, {"theme": "dark", "density": "s", "keys": {"accept": "Shift+Y", "skip": "a"}})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["preferences"] == {"theme": "dark", "density": "s", "keys": {"accept": "Shift+Y", "skip": "a"}}
    assert body["keys"]["accept"] == ["Shift+Y"] and body["keys"]["skip"] == ["a"]

    html = client.get("/review?group=concept&status=&sort=id").get_data(as_text=True)
    assert '<html lang="en" data-theme="dark">' in html and 'class="grid density-s"' in html
    data = _page_data(html)
    bound = {key: action for row in data["shortcuts"] for key, action in row.items()}
    assert bound["Shift+Y"] == "accept" and bound["a"] == "skip" and "s" not in bound
    assert data["density"] == "s"
    assert "<dt>Shift+Y</dt><dd>accept the proposed value</dd>" in html  # the help follows the keys
    # Only this user's: another reviewer keeps the defaults.
    other = _page_data(other_client.get("/review?group=concept&status=&sort=id").get_data(as_text=True))
    assert {key: action for row in other["shortcuts"] for key, action in row.items()}["a"] == "accept"

    # A change of one preference keeps the others; the form page saves too and shows a refusal.
    assert _put(client, csrf, {"theme": "light"}).get_json()["preferences"]["keys"] == {"accept": "Shift+Y", "skip": "a"}
    page = client.get("/preferences").get_data(as_text=True)
    assert 'data-testid="prefs-key-accept"' in page and 'value="Shift+Y"' in page
    token = page_csrf(client, "/preferences")
    refused = client.post("/preferences", data={"csrf_token": token, "theme": "dark", "density": "m",
                                                "key-accept": "F12"})
    assert refused.status_code == 400 and "keys.accept: F12 is reserved" in refused.get_data(as_text=True)
    saved = client.post("/preferences", data={"csrf_token": token, "theme": "dark", "density": "l", "key-accept": ""})
    assert saved.status_code == 302
    assert client.get("/api/preferences").get_json()["preferences"] == {"theme": "dark", "density": "l", "keys": {}}
