"""The index keeper builds the FAISS type Config asks for, from the catalog's stored vectors."""

from __future__ import annotations

import faiss

from labeler.collection import Collection, in_session
from labeler.config import Config
from labeler.vectors.index import FaissIndex


def test_index_settings_come_from_the_environment():
    config = Config.from_env({"LABELER_INDEX_FACTORY": "HNSW32", "LABELER_INDEX_GPU": "1"})
    assert (config.index_factory, config.index_gpu) == ("HNSW32", True)
    # the default is now auto: exact Flat while small, IVF from index_ivf_above vectors
    assert (Config.from_env({}).index_factory, Config.from_env({"LABELER_INDEX_GPU": "0"}).index_gpu) == ("auto", False)
    # LABELER_INDEX is the new name; LABELER_INDEX_FACTORY stays as its alias
    both = Config.from_env({"LABELER_INDEX": "ivf", "LABELER_INDEX_FACTORY": "HNSW32", "LABELER_INDEX_IVF_ABOVE": "9"})
    assert (both.index_factory, both.index_ivf_above) == ("ivf", 9)


def test_rebuilt_index_uses_the_configured_factory(indexed_collection):
    hnsw = Collection(indexed_collection.config.with_(index_factory="HNSW32"))
    index = in_session(hnsw.index_keeper.sync, rebuild=True)
    model_id = in_session(hnsw.models.current_id)
    loaded = FaissIndex.load(hnsw.index_keeper.path(model_id))  # kept: the inner index is its
    assert isinstance(faiss.downcast_index(loaded._index.index), faiss.IndexHNSWFlat)
    ids, vecs = in_session(hnsw.vectors.read)
    assert sorted(index.ids().tolist()) == ids.tolist()
    _, found = index.search(vecs[:3], 1)
    assert found[:, 0].tolist() == ids[:3].tolist()  # each stored vector finds its own image


def test_every_index_the_keeper_builds_is_a_vector_index(indexed_collection):
    from labeler.vectors.vector_index import VectorIndex

    for spec in ("flat", "HNSW32", "IVF4,Flat"):
        index = in_session(indexed_collection.index_keeper.rebuild, spec)
        assert isinstance(index, VectorIndex), spec
        scores, ids = index.search(index_vectors(indexed_collection)[:2], 3)
        assert scores.shape == ids.shape == (2, 3) and set(ids[:, 0].tolist()) <= set(index.ids().tolist())
    assert not isinstance(object(), VectorIndex)


def index_vectors(collection):
    return in_session(collection.vectors.read)[1]
