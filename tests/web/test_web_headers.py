"""Security headers on every response: CSP without inline script, no framing, no sniffing, a
same-origin referrer, and private or no caching for images and the API."""

from __future__ import annotations

import re

from tests.web.conftest import Users, login

PAGES = ["/", "/review", "/review?group=concept", "/search?q=hammer", "/images/1", "/lab"]


def _assert_guarded(response, url: str) -> None:
    headers = response.headers
    csp = headers.get("Content-Security-Policy", "")
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert directives.get("default-src") == ["'self'"], (url, csp)
    assert directives.get("script-src") == ["'self'"], (url, csp)  # no 'unsafe-inline', no 'unsafe-eval'
    assert directives.get("frame-ancestors") == ["'none'"], (url, csp)
    assert headers.get("X-Frame-Options") == "DENY", url
    assert headers.get("X-Content-Type-Options") == "nosniff", url
    assert headers.get("Referrer-Policy") == "same-origin", url


def test_every_response_carries_the_security_headers(client):
    anonymous = ["/auth/login", "/", "/api/stats", "/static/style.css", "/no/such/page"]
    for url in anonymous:
        _assert_guarded(client.get(url), url)
    login(client, Users.admin)
    for url in [*PAGES, "/api/stats", "/api/labels?limit=1", "/images/1/thumb", "/images/1/full",
                "/images/999999/full", "/api/labels/999999"]:
        _assert_guarded(client.get(url), url)


def test_images_are_cached_privately_and_the_api_not_at_all(client):
    login(client, Users.reviewer)
    for url in ("/images/1/thumb", "/images/1/full"):
        cache = client.get(url).headers["Cache-Control"]
        assert "private" in cache and "public" not in cache, (url, cache)
    for url in ("/api/stats", "/api/labels?limit=1", "/api/labels/999999"):
        assert "no-store" in client.get(url).headers["Cache-Control"], url


def test_no_page_has_inline_script_for_the_csp_to_block(client):
    login(client, Users.admin)
    for url in ["/auth/login", *PAGES]:
        html = client.get(url).get_data(as_text=True)
        for tag in re.findall(r"<script\b[^>]*>", html):
            # Scripts come from files; a JSON <script> is data the browser never runs.
            assert 'src="/static/' in tag or 'type="application/json"' in tag, (url, tag)
        assert not re.search(r"\son[a-z]+\s*=", html, re.IGNORECASE), url  # no onclick= and friends
        assert "javascript:" not in html.lower(), url
