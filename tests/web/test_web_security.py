"""Images by catalog id only, traversal attempts, and error pages that never leak a stack trace."""

from __future__ import annotations

from pathlib import Path

from PIL import Image as PILImage
from sqlalchemy import select, text

from labeler.store import db
from labeler.store.catalog import Image
from tests.web.conftest import Users, login

TRAVERSALS = [
    "/images/../../etc/passwd",
    "/images/..%2F..%2Fetc%2Fpasswd/full",
    "/images/%2e%2e/%2e%2e/etc/passwd",
    "/images/1/../../../etc/passwd",
    "/images/-1/full",
    "/images/1/full/../../../../etc/passwd",
    "/static/../labeler/store/db.py",
    "/static/..%2Flabeler%2Fdb.py",
    "/static/%2e%2e/labeler/store/db.py",
    "/static//etc/passwd",
]


def test_images_are_served_by_id(client, web_config):
    login(client, Users.reviewer)
    with db.session_scope(web_config) as s:
        image = s.scalars(select(Image).order_by(Image.id)).first()
        path = Path(image.path)
    full = client.get(f"/images/{image.id}/full")
    assert full.status_code == 200 and full.data == path.read_bytes()
    assert full.headers["X-Content-Type-Options"] == "nosniff"
    thumb = client.get(f"/images/{image.id}/thumb")
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg" and thumb.data[:3] == b"\xff\xd8\xff"
    assert client.get("/images/999999/thumb").status_code == 404


def test_an_older_homes_webp_thumbnail_is_still_served(client, web_config):
    from labeler.ingest.walk import thumbnail_path

    login(client, Users.reviewer)
    with db.session_scope(web_config) as s:
        image = s.scalars(select(Image).order_by(Image.id)).first()
    jpeg, webp = thumbnail_path(web_config, image.sha256), thumbnail_path(web_config, image.sha256, ".webp")
    PILImage.open(jpeg).save(webp, "WEBP")  # as indexing wrote thumbnails before they were JPEG
    jpeg.unlink()
    thumb = client.get(f"/images/{image.id}/thumb")
    assert thumb.status_code == 200 and thumb.mimetype == "image/webp" and thumb.data[8:12] == b"WEBP"


def test_a_missing_file_is_a_404_not_a_crash(client, web_config):
    login(client, Users.reviewer)
    with db.session_scope(web_config) as s:
        image = s.scalars(select(Image).order_by(Image.id.desc())).first()
        path = Path(image.path)
    path.rename(path.with_suffix(".moved"))
    response = client.get(f"/images/{image.id}/full")
    assert response.status_code == 404 and "missing on disk" in response.get_data(as_text=True)


def test_traversal_attempts_get_404(client, other_client):
    login(client, Users.reviewer)
    for anyone in (client, other_client):  # logged in or not
        for url in TRAVERSALS:
            response = anyone.get(url, follow_redirects=True)  # werkzeug merges // with a redirect first
            assert response.status_code == 404, (url, response.status_code)
            assert b"import" not in response.data and b"root:" not in response.data


def test_a_hostile_path_in_the_catalog_is_still_only_served_by_its_id(client, web_config):
    # Paths only ever come from the catalog; a request cannot choose one.
    login(client, Users.reviewer)
    with db.session_scope(web_config) as s:
        image = s.scalars(select(Image).order_by(Image.id)).first()
        assert all(not f.path.startswith("/etc") for f in image.files)
    assert client.get("/images/etc/passwd/full").status_code == 404


def test_error_pages_are_html_for_pages_and_json_for_the_api(client):
    login(client, Users.reviewer)
    page = client.get("/no/such/page")
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert 'data-testid="error-status">Error 404' in page.get_data(as_text=True)
    api = client.get("/api/no/such/route")
    assert api.status_code == 404 and api.get_json()["status"] == 404
    wrong_method = client.delete("/api/stats", headers={"X-CSRF-Token": "x"})
    assert wrong_method.status_code in (400, 405)


def test_a_server_error_shows_no_stack_trace(client, web_config):
    login(client, Users.reviewer)
    with db.get_engine(web_config).begin() as conn:
        conn.execute(text("DROP TABLE review_events"))  # a broken catalog: the query will fail
    label = client.get("/api/labels?limit=1").get_json()["labels"][0]
    api = client.get(f"/api/images/{label['image_id']}")
    assert api.status_code == 500
    assert api.get_json() == {"error": "internal error; the details are in the server log", "status": 500}
    page = client.get(f"/images/{label['image_id']}")
    body = page.get_data(as_text=True)
    assert page.status_code == 500 and "Traceback" not in body and "sqlite" not in body.lower()
