"""The one runner behind index, ingest and embed: progress adds up and each image is embedded once."""

from __future__ import annotations

from labeler.collection import Collection
from labeler.pipeline import embed_pending, index_paths
from tests.imagegen import write_good_images


def test_ingest_then_embed_reports_progress_and_embeds_each_image_once(empty_config, tmp_path):
    photos = tmp_path / "photos"
    write_good_images(photos, 7)
    collection = Collection(empty_config.with_(batch_size=3, checkpoint_every=2))
    totals, done = [], []

    report = index_paths(collection, [photos], embed=False, progress=done.append, total=totals.append)
    assert (report.added, report.embedded, report.model) == (7, 0, None)
    assert totals == [7] and sum(done) == 7

    totals, done = [], []
    assert embed_pending(collection, progress=done.append, total=totals.append) == 7
    assert totals == [7] and sum(done) == 7 and max(done) <= 3
    ids, _ = collection.vectors.read()
    assert len(ids) == 7 and sorted(collection.index_cache.sync().ids().tolist()) == ids.tolist()

    again = index_paths(collection, [photos], progress=done.append)
    assert (again.unchanged, again.embedded) == (7, 0)
    assert embed_pending(collection) == 0
