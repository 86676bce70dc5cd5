"""import-labels reads a long CSV: one ``group`` and ``value`` a row beside the image's column, as
tools that export one annotation a line write it. Each value lands on its own image and group, the
groups a row does not name are left alone, and the prompt set checks it as it checks a wide file.
Real catalog from the migrations, real labels, the real CLI.
"""

from __future__ import annotations

import random

import pytest
from sqlalchemy import select

from labeler.core.prompts import load_prompt_set
from labeler.exchange.importing import read_source
from labeler.labeling.bulk import label_collection
from labeler.store.catalog import ImageFile, Label

WORKSHOP = load_prompt_set("workshop")


@pytest.fixture
def labeled(indexed_collection, indexed_cli):
    label_collection(indexed_collection, WORKSHOP, "mean-score")
    return indexed_collection, indexed_cli


def labels(collection) -> dict[tuple[int, str], tuple[str, str]]:
    with collection.session() as s:
        return {(l.image_id, l.group): (l.value, l.status) for l in s.scalars(select(Label))}


def test_each_row_of_a_long_csv_lands_on_its_own_image_and_group(labeled, tmp_path):
    collection, cli = labeled
    before = labels(collection)
    with collection.session() as s:
        paths = dict(s.execute(select(ImageFile.image_id, ImageFile.path).order_by(ImageFile.image_id)).all())
    rng = random.Random(7)
    wanted: dict[tuple[int, str], str] = {}
    for image_id in list(paths)[:12]:
        for group in rng.sample(["concept", "color", "material"], 2):  # each image: two of the three
            options = [o for o in WORKSHOP.groups[group].option_names if o != before[(image_id, group)][0]]
            wanted[(image_id, group)] = rng.choice(options)
    rows = [f"{paths[image_id]},{group},{value}" for (image_id, group), value in wanted.items()]
    rng.shuffle(rows)  # an image's groups spread over the file, in any order
    source = tmp_path / "long.csv"
    source.write_text("path,group,value\n" + "\n".join(rows) + "\n" + f"{paths[min(paths)]},,saw\n")

    assert read_source(source).kind == "long-csv"
    report = cli.json("import-labels", source)

    assert report["format"] == "long-csv" and sorted(report["groups"]) == ["color", "concept", "material"]
    assert report["rows"] == len(rows) and report["imported"] == report["corrected"] == len(wanted)
    assert report["skipped"] == {"no group named in the group column": 1}  # and no "no choice" for the rest
    after = labels(collection)
    for key, value in wanted.items():
        assert after[key] == (value, "corrected"), key
    assert {k: v for k, v in after.items() if k not in wanted} == {k: v for k, v in before.items() if k not in wanted}


def test_a_long_csv_with_an_unknown_group_or_value_is_refused_whole(labeled, tmp_path):
    collection, cli = labeled
    before = labels(collection)
    with collection.session() as s:
        image_id = s.scalar(select(ImageFile.image_id).order_by(ImageFile.image_id))
    for bad, named in ((f"{image_id},colour,red", "colour"), (f"{image_id},concept,anvil", "anvil")):
        source = tmp_path / "long.csv"
        source.write_text(f"image_id,group,value\n{image_id},concept,saw\n{bad}\n")
        result = cli("import-labels", source, expect=2)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], result.stderr
        assert labels(collection) == before  # nothing written, not even the good row


def test_an_image_and_group_set_twice_in_one_file_keeps_the_last_value_and_says_so(labeled, tmp_path, monkeypatch):
    from labeler.exchange import importing

    monkeypatch.setattr(importing, "CHUNK", 2)  # the repeat lands in a later chunk than its first line
    collection, cli = labeled
    before = labels(collection)
    with collection.session() as s:
        first, second = s.scalars(select(ImageFile.image_id).order_by(ImageFile.image_id).limit(2)).all()
    options = [o for o in WORKSHOP.groups["concept"].option_names if o != before[(first, "concept")][0]]
    source = tmp_path / "long.csv"
    source.write_text("image_id,group,value\n"
                      f"{first},concept,{options[0]}\n"  # line 2
                      f"{second},color,{before[(second, 'color')][0]}\n"
                      f"{first},color,{before[(first, 'color')][0]}\n"
                      f"{first},concept,{options[1]}\n")  # line 5: the same image and group again

    report = cli.json("import-labels", source)

    assert report["repeated"] == 1 and report["repeated_rows"] == [{"line": 5, "group": "concept", "image_id": first}]
    after = labels(collection)
    assert after[(first, "concept")] == (options[1], "corrected")  # the file's last value stands
    assert after[(first, "color")] == (before[(first, "color")][0], "accepted")

    source.write_text("image_id,group,value\n" f"{second},concept,saw\n" f"{second},concept,mug\n")
    result = cli("import-labels", source)
    assert "note: 1 value repeats an image and group an earlier line of the file set; the last one stands " \
           "(first at line 3, concept)" in result.stderr
    assert labels(collection)[(second, "concept")][0] == "mug"
