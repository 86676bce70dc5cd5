"""Through the real server (waitress): pages go gzipped and small, static files are cached for a
year under their content hash, and the browser uses them from its cache on the next page."""

from __future__ import annotations

import gzip
import json
import re
import urllib.request

import pytest

from tests.browser.conftest import Accounts, Contexts, Demo, expect, queue_url

pytestmark = pytest.mark.browser

QUEUE_MAX_WIRE_BYTES = 15_000  # issue 14's target for one queue page


def _get(demo: Demo, path: str, cookie: str, **headers: str):
    request = urllib.request.Request(demo.url + path, headers={"Cookie": cookie, **headers})
    return urllib.request.urlopen(request, timeout=30)


def test_the_queue_page_is_gzipped_and_its_static_files_cached(contexts: Contexts, demo: Demo) -> None:
    page = contexts.page(Accounts.reviewer)
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies())
    with _get(demo, queue_url("concept", status="", sort="id"), cookie, **{"Accept-Encoding": "gzip"}) as response:
        wire = response.read()
        assert response.headers["Content-Encoding"] == "gzip"
    html = gzip.decompress(wire).decode()
    data = re.search(r'<script type="application/json" id="review-data">(.*?)</script>', html, re.S)
    assert data and len(json.loads(data.group(1))["cards"]) >= 40  # a full page of cards, not an error
    assert len(wire) <= QUEUE_MAX_WIRE_BYTES, (len(wire), len(html))

    static = re.findall(r'(?:href|src)="(/static/[^"]+)"', html)
    assert static and all(re.search(r"\?v=[0-9a-f]{12}$", ref) for ref in static), static
    for ref in static:
        with _get(demo, ref, cookie, **{"Accept-Encoding": "gzip"}) as response:
            assert "immutable" in response.headers["Cache-Control"], ref
            assert "max-age=31536000" in response.headers["Cache-Control"], ref
            assert response.headers["Content-Encoding"] == "gzip", ref

    # The browser keeps them: the next queue page fetches no static file over the network.
    page.goto(queue_url("concept", status="", sort="id"))
    expect(page.get_by_test_id("card").first).to_be_visible()
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cached: set[str] = set()
    fetched: dict[str, str] = {}
    cdp.on("Network.requestServedFromCache", lambda event: cached.add(event["requestId"]))
    cdp.on("Network.responseReceived", lambda event: fetched.update({event["requestId"]: event["response"]["url"]})
           if "/static/" in event["response"]["url"] and not event["response"].get("fromDiskCache") else None)
    page.goto(queue_url("concept", status="", sort="id") + "&page=2")
    expect(page.get_by_test_id("card").first).to_be_visible()
    page.wait_for_load_state("load")
    assert [url for rid, url in fetched.items() if rid not in cached] == []
