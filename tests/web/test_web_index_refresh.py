"""A running server sees images another process indexes into its home, without a restart."""

from __future__ import annotations

import time

from sqlalchemy import select

from labeler.store import db
from labeler.store.catalog import ImageFile
from tests.cli import manage
from tests.imagegen import write_good_images
from tests.web.conftest import IMAGE_COUNT, Users, login

NEW_IMAGES = 4
WITHIN_S = 10.0


def _hit_ids(client) -> set[int]:
    response = client.get(f"/api/search?q=a+colourful+picture&k={IMAGE_COUNT + 2 * NEW_IMAGES}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return {hit["image_id"] for hit in response.get_json()["hits"]}


def test_search_sees_images_indexed_by_another_process_within_seconds(client, web_config, tmp_path):
    login(client, Users.reviewer)
    before = _hit_ids(client)
    assert len(before) == IMAGE_COUNT

    folder = tmp_path / "more"
    write_good_images(folder, NEW_IMAGES, seed=41, formats=[("png", "PNG")])
    manage("--home", web_config.home, "--model", web_config.model, "index", folder, expect=0)
    with db.session_scope(web_config) as s:
        new = set(s.scalars(select(ImageFile.image_id).where(ImageFile.path.like(f"{folder}%"))))
    assert len(new) == NEW_IMAGES and not new & before

    deadline = time.monotonic() + WITHIN_S
    while not new <= (seen := _hit_ids(client)):
        assert time.monotonic() < deadline, f"after {WITHIN_S:.0f} s search still misses {sorted(new - seen)}"
        time.sleep(0.2)
    assert seen == before | new
