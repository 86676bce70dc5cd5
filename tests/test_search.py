"""Search through the real FAISS index: text, combined queries, filters, concepts, similar images."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from labeler.core import scoring
from labeler.store.catalog import Image, ImageFile, Label
from labeler.collection import Collection, in_session
from labeler.labeling.bulk import label_collection
from labeler.core.prompts import generic_templates, load_prompt_set
from labeler.search import (QuerySyntaxError, Term, concept_vector, parse_query, query_vector, search, search_concept,
                            similar)


def exact_ranking(collection: Collection, vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every present image ranked by cosine with numpy: (ids, scores), best first."""
    ids, vecs = in_session(collection.vectors.read)
    scores = vecs @ vector
    order = np.argsort(-scores, kind="stable")
    return ids[order], scores[order]


def test_parse_query():
    assert parse_query("red hammer") == [Term(1.0, text="red hammer")]
    assert parse_query('"hammer" - "toy" + image:123') == [Term(1.0, text="hammer"), Term(-1.0, text="toy"),
                                                           Term(1.0, image_id=123)]
    assert parse_query('0.5*"red" + "hammer"') == [Term(0.5, text="red"), Term(1.0, text="hammer")]
    assert parse_query('-2*image:4') == [Term(-2.0, image_id=4)]


@pytest.mark.parametrize("query, reason", [
    ('"a" "b"', "expected + or - at column 5"),
    ('"a" +', "ends where a term is expected"),
    ("image:x", "image reference is image:ID"),
    ("image:99999999999999999999", "image reference is image:ID"),
    ('2 "a"', "expected * after weight 2"),
    ('"a" + foo', "unexpected 'f' at column 7"),
    ('""', "empty quoted text"),
    ("   ", "empty query"),
])
def test_bad_query_syntax(query, reason):
    with pytest.raises(QuerySyntaxError, match=reason.replace("*", r"\*").replace("+", r"\+")):
        parse_query(query)


def test_text_search_returns_the_index_best_first(indexed_collection):
    vector = scoring.unit(in_session(indexed_collection.vectors.text_vectors, ["a red hammer"])[0])
    hits = search(indexed_collection, "a red hammer", k=5)
    ids, scores = exact_ranking(indexed_collection, vector)
    assert [h.image_id for h in hits] == ids[:5].tolist()
    np.testing.assert_allclose([h.score for h in hits], scores[:5], atol=1e-5)
    with indexed_collection.session() as s:
        for hit in hits:
            assert hit.path == s.get(Image, hit.image_id).path


def test_templates_and_combined_queries_build_the_expected_vector(indexed_collection):
    templated = query_vector(indexed_collection, "hammer", templates=True)
    expected = scoring.unit(in_session(indexed_collection.vectors.text_vectors, [t.format(name="hammer") for t in generic_templates()])
                            .mean(axis=0))
    np.testing.assert_allclose(templated, expected, atol=1e-6)
    ids, vecs = in_session(indexed_collection.vectors.read)
    combined = query_vector(indexed_collection, f'0.5*"red" + "hammer" - "toy" + image:{ids[3]}')
    red, hammer, toy = in_session(indexed_collection.vectors.text_vectors, ["red", "hammer", "toy"])
    np.testing.assert_allclose(combined, scoring.unit(0.5 * red + hammer - toy + vecs[3]), atol=1e-6)
    with pytest.raises(QuerySyntaxError, match="cancel out"):
        query_vector(indexed_collection, '"red" - "red"')


def test_filters_by_label_and_review_status(indexed_collection):
    label_collection(indexed_collection, load_prompt_set("workshop"), "mean-score")
    with indexed_collection.session() as s:
        concept = dict(s.execute(select(Label.image_id, Label.value).where(Label.group == "concept")).all())
        color = dict(s.execute(select(Label.image_id, Label.value).where(Label.group == "color")).all())
    common = max(set(concept.values()), key=list(concept.values()).count)
    hits = search(indexed_collection, "a tool", k=100, where={"concept": common})
    assert hits and {concept[h.image_id] for h in hits} == {common}
    assert len(hits) == list(concept.values()).count(common)
    first = hits[0].image_id
    hits = search(indexed_collection, "a tool", k=100, where={"concept": common, "color": color[first]})
    assert {(concept[h.image_id], color[h.image_id]) for h in hits} == {(common, color[first])}
    assert search(indexed_collection, "a tool", k=5, status="accepted") == []
    with indexed_collection.session() as s:
        label = s.scalar(select(Label).where(Label.image_id == first, Label.group == "concept"))
        label.status = "accepted"
    assert [h.image_id for h in search(indexed_collection, "a tool", k=5, status="accepted")] == [first]
    hits = search(indexed_collection, "a tool", k=5, where={"concept": common}, status="reviewed")
    assert [h.image_id for h in hits] == [first]
    assert search(indexed_collection, "a tool", k=5, where={"concept": "unicorn"}) == []


def test_missing_images_are_never_returned(indexed_collection):
    ids, _ = in_session(indexed_collection.vectors.read)
    gone = int(ids[0])
    assert gone in in_session(indexed_collection.index_keeper.get).ids().tolist()  # loaded now, so the index still holds it below
    with indexed_collection.session() as s:
        s.get(Image, gone).status = "missing"
        for f in s.scalars(select(ImageFile).where(ImageFile.image_id == gone)):
            f.status = "missing"
    image_vec = in_session(indexed_collection.vectors.read, [int(ids[1])])[1][0]
    # Hits are checked against the catalog, whatever the loaded index still holds.
    hits = search(indexed_collection, f"image:{ids[1]}", k=len(ids))
    assert gone not in {h.image_id for h in hits} and len(hits) == len(ids) - 1
    assert hits[0].image_id == int(ids[1]) and hits[0].score == pytest.approx(float(image_vec @ image_vec), abs=1e-5)


def test_similar_by_id_and_by_path_leaves_the_image_out(indexed_collection):
    ids, vecs = in_session(indexed_collection.vectors.read)
    target = int(ids[5])
    hits = similar(indexed_collection, target, k=4)
    ranked, scores = exact_ranking(indexed_collection, vecs[5])
    expected = [i for i in ranked.tolist() if i != target][:4]
    assert [h.image_id for h in hits] == expected
    with indexed_collection.session() as s:
        path = s.get(Image, target).path
    assert [h.image_id for h in similar(indexed_collection, path, k=4)] == expected


def test_concept_search_uses_the_option_ensemble(indexed_collection):
    prompt_set = load_prompt_set("workshop")
    option = prompt_set.groups["concept"].option("hammer")
    vecs = in_session(indexed_collection.vectors.text_vectors, [p.text for p in option.prompts])
    weights = np.array([p.weight for p in option.prompts])
    expected_vector = scoring.unit((weights[:, None] * vecs).sum(axis=0))
    np.testing.assert_allclose(concept_vector(indexed_collection, prompt_set, "concept=hammer"), expected_vector,
                               atol=1e-6)
    hits = search_concept(indexed_collection, prompt_set, "hammer", k=6)
    assert [h.image_id for h in hits] == exact_ranking(indexed_collection, expected_vector)[0][:6].tolist()


def test_search_and_similar_cli(indexed_cli, indexed_collection):
    hits = indexed_cli.json("search", "a blue ball", "-k", "3")
    assert len(hits) == 3 and all(set(h) >= {"image_id", "path", "score"} for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    near = indexed_cli.json("similar", str(hits[0]["image_id"]), "-k", "2")
    assert len(near) == 2 and hits[0]["image_id"] not in {h["image_id"] for h in near}
    table = indexed_cli("search", "a blue ball", "-k", "2").output
    assert "score" in table and hits[0]["path"] in table
    concept = indexed_cli.json("search", "--concept", "mug", "--prompt-set", "workshop", "-k", "2")
    assert len(concept) == 2
    bad = indexed_cli("search", '"hammer" +', expect=2)
    assert bad.output.strip() == "error: query ends where a term is expected: '\"hammer\" +'"
    assert "GROUP=VALUE" in indexed_cli("search", "x", "--where", "concept", expect=2).output
    assert "no option" in indexed_cli("search", "--concept", "unicorn", "--prompt-set", "workshop", expect=2).output
    assert "not in the collection" in indexed_cli("similar", "99999", expect=2).output
    assert "no image in the catalog" in indexed_cli("similar", "/no/such.png", expect=2).output


def test_a_filter_that_names_nothing_says_so(indexed_cli, indexed_collection):
    from labeler.labeling.bulk import label_collection

    label_collection(indexed_collection, load_prompt_set("workshop"), "mean-score")
    with indexed_collection.session() as s:
        held = sorted(s.scalars(select(Label.value).where(Label.group == "concept", Label.value.is_not(None))
                                .distinct()))
    typo = indexed_cli("search", "a hammer", "--where", "concept=hamer")
    assert typo.exit_code == 0 and "no matches" in typo.stdout  # no match is an answer, not an error
    note = typo.stderr.strip().splitlines()
    assert len(note) == 1 and note[0].startswith("note: no label of group 'concept' is 'hamer' (its values: ")
    assert note[0].endswith(f"(its values: {', '.join(held)})")  # what the labels hold, in order
    group = indexed_cli("similar", "1", "--where", "colour=red")  # the group is 'color'
    assert "note: no labels in group 'colour' (have: color, concept," in group.stderr
    assert indexed_cli("search", "a hammer", "--where", "concept=hammer", "-k", "1").stderr == ""


def test_a_search_of_an_empty_collection_says_what_to_run(empty_cli):
    empty_cli("db", "upgrade")  # a catalog, no images yet
    result = empty_cli("search", "a hammer")
    assert result.exit_code == 0 and "no matches" in result.stdout
    assert result.stderr == "note: no image is embedded yet; run: manage.py index PATH\n"


def test_a_prompt_another_process_cached_meanwhile_is_not_an_error(indexed_collection):
    from labeler.store.catalog import PromptEmbedding
    from labeler.vectors.vector_store import _insert_new

    first = in_session(indexed_collection.vectors.text_vectors, ["a chisel on a shelf"])[0]
    with indexed_collection.session() as s:
        model_id, key, vector = s.execute(select(PromptEmbedding.model_id, PromptEmbedding.text_hash,
                                                 PromptEmbedding.vector)
                                          .where(PromptEmbedding.text == "a chisel on a shelf")).one()
        # the first row is a duplicate, as when two commands cache the same prompt at once
        _insert_new(s, [{"model_id": model_id, "text_hash": key, "text": "a chisel on a shelf", "vector": vector},
                        {"model_id": model_id, "text_hash": "0" * 64, "text": "fresh", "vector": vector}])
    with indexed_collection.session() as s:
        texts = s.scalars(select(PromptEmbedding.text).where(PromptEmbedding.text.in_(["a chisel on a shelf", "fresh"])))
        assert sorted(texts) == ["a chisel on a shelf", "fresh"]
    np.testing.assert_array_equal(in_session(indexed_collection.vectors.text_vectors, ["a chisel on a shelf"])[0], first)
