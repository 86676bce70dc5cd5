"""Security headers on every response: CSP without inline script, no framing, no sniffing, a
same-origin referrer, and private or no caching for images and the API."""

from __future__ import annotations

import gzip
import hashlib
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


# --- lighter pages: gzip and content-hashed static files (labeler.web.delivery) ---

STATIC_REF = re.compile(r'(?:href|src)="(/static/[^"]+)"')


def _gunzip(response) -> str:
    assert response.headers.get("Content-Encoding") == "gzip", response.headers
    return gzip.decompress(response.get_data()).decode()


def test_pages_and_api_answers_are_gzipped_for_clients_that_accept_it(client):
    login(client, Users.admin)
    for url in ["/auth/login", *PAGES, "/api/labels?limit=50", "/no/such/page"]:
        plain = client.get(url)
        packed = client.get(url, headers={"Accept-Encoding": "gzip, deflate, br"})
        assert plain.status_code == packed.status_code, url
        assert "Content-Encoding" not in plain.headers, url
        assert "Accept-Encoding" in packed.headers.get("Vary", ""), url
        body = _gunzip(packed)
        assert int(packed.headers["Content-Length"]) == len(packed.get_data()) < len(plain.get_data()), url
        if plain.mimetype == "text/html":  # same page, bar the per-request CSRF token
            assert body.startswith("<!doctype html>") and len(body) == len(plain.get_data(as_text=True)), url
    # gzip;q=0 is a refusal; images are compressed already and go as they are.
    assert "Content-Encoding" not in client.get("/", headers={"Accept-Encoding": "gzip;q=0"}).headers
    assert "Content-Encoding" not in client.get("/images/1/thumb", headers={"Accept-Encoding": "gzip"}).headers


def test_static_urls_carry_the_files_content_hash(client):
    from labeler.web import STATIC

    login(client, Users.admin)
    seen = set()
    for url in ["/auth/login", *PAGES]:
        for ref in STATIC_REF.findall(client.get(url).get_data(as_text=True)):
            path, _, version = ref.partition("?v=")
            expected = hashlib.sha256((STATIC / path.removeprefix("/static/")).read_bytes()).hexdigest()[:12]
            assert version == expected, (url, ref)
            seen.add(path)
    assert {"/static/style.css", "/static/labeler.js"} <= seen


def test_hashed_static_files_are_kept_a_year_and_others_revalidated(client):
    page = client.get("/auth/login").get_data(as_text=True)
    hashed = next(ref for ref in STATIC_REF.findall(page) if ref.startswith("/static/style.css?v="))
    cache = client.get(hashed).headers["Cache-Control"]
    assert {"public", "max-age=31536000", "immutable"} <= {d.strip() for d in cache.split(",")}, cache
    for url in ("/static/style.css", "/static/style.css?v=000000000000"):  # no hash, or an old one
        response = client.get(url)
        assert response.status_code == 200
        assert "no-cache" in response.headers["Cache-Control"] and "immutable" not in response.headers["Cache-Control"]
        etag = response.headers["ETag"]
        assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    # gzipped, the ETag turns weak and still revalidates to a 304.
    packed = client.get("/static/style.css", headers={"Accept-Encoding": "gzip"})
    assert _gunzip(packed) == client.get("/static/style.css").get_data(as_text=True)
    assert packed.headers["ETag"].startswith('W/"')
    assert client.get("/static/style.css", headers={"Accept-Encoding": "gzip",
                                                    "If-None-Match": packed.headers["ETag"]}).status_code == 304


def test_a_changed_static_file_gets_a_new_hash(tmp_path):
    from labeler.web.delivery import static_digest

    (tmp_path / "a.css").write_text("a { color: red }")
    first = static_digest(str(tmp_path), "a.css")
    assert first == hashlib.sha256(b"a { color: red }").hexdigest()[:12]
    (tmp_path / "a.css").write_text("a { color: blue; }")
    assert static_digest(str(tmp_path), "a.css") != first
    assert static_digest(str(tmp_path), "missing.css") is None
    assert static_digest(str(tmp_path), ".") is None
