"""The one runner behind index, ingest and embed: progress adds up and each image is embedded once."""

from __future__ import annotations

import hashlib

from sqlalchemy import select

from labeler.store.catalog import Image
from labeler.collection import Collection, in_session
from labeler.encoding.images import decode
from labeler.ingest.run import embed_pending, index_paths
from tests.imagegen import picture, write_good_images


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
    ids, _ = in_session(collection.vectors.read)
    assert len(ids) == 7 and sorted(in_session(collection.index_keeper.sync).ids().tolist()) == ids.tolist()

    again = index_paths(collection, [photos], progress=done.append)
    assert (again.unchanged, again.embedded) == (7, 0)
    assert embed_pending(collection) == 0


def test_vectors_are_the_encoders_own_preprocess_in_every_batch(empty_config, tmp_path):
    """Fused decode → model input in the loader threads, the model a batch ahead of the writes:
    each image still gets the vector the encoder's own transform gives it, by content."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(8):  # large enough for JPEG draft mode, odd sizes for the resize and crop
        picture(i, (517 + 31 * i, 389 if i % 2 else 701)).save(photos / f"photo_{i}.jpg", quality=90)
    collection = Collection(empty_config.with_(batch_size=3, checkpoint_every=2))
    assert index_paths(collection, [photos]).embedded == 8

    encoder = in_session(collection.models.encoder)
    draft = max(empty_config.thumbnail_size, encoder.image_size)
    ids, vectors = in_session(collection.vectors.read)
    with collection.session() as s:
        sha_of = dict(s.execute(select(Image.id, Image.sha256)).all())
    for path in photos.iterdir():
        data = path.read_bytes()
        image = decode(data, empty_config.max_pixels, draft_size=draft).image
        reference = encoder.encode_images([encoder.preprocess(image)])[0]
        stored = vectors[[sha_of[i] for i in ids].index(hashlib.sha256(data).hexdigest())]
        assert float(stored @ reference) >= 0.9999, path.name
