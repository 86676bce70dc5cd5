"""``check`` finds real corruption: vector bytes overwritten in the index file, and a damaged
catalog page; ``--repair`` rebuilds the index, and says it cannot fix the catalog."""

from __future__ import annotations

import json
import os

from labeler.store import db

PAGE = 4096


def _check(cli, *flags):
    result = cli("check", *flags, "--json", expect=None)
    return result.exit_code, json.loads(result.stdout)


def test_overwritten_vector_bytes_are_found_and_repaired(indexed_collection, indexed_cli):
    code, report = _check(indexed_cli)
    assert (code, report["ok"]) == (0, True), report
    with indexed_collection.session() as s:
        path = indexed_collection.index_keeper.path(indexed_collection.models.current_id(s))
    size = path.stat().st_size
    with open(path, "r+b") as fh:  # the middle of a flat index is its vectors: 64 bytes of 0x47 (~51,000.0)
        fh.seek(size // 2)
        fh.write(b"\x47" * 64)
    code, report = _check(indexed_cli)
    assert code == 1 and not report["ok"], report
    text = " ".join(report["problems"])
    assert "sampled vectors in the index differ from the catalog's" in text
    assert "the index answers scores up to" in text
    code, report = _check(indexed_cli, "--repair")
    assert (code, report["ok"], report["repaired"]) == (0, True, True), report
    assert report["recall"] == 1.0


def test_a_damaged_catalog_page_is_found_and_repair_says_it_cannot_fix_it(indexed_collection, indexed_cli):
    home = indexed_collection.config.home
    db.dispose_engines()  # the WAL folded in: the pages are all in catalog.db
    catalog = home / "catalog.db"
    pages = catalog.stat().st_size // PAGE
    assert pages > 4
    with open(catalog, "r+b") as fh:  # a table page in the middle, overwritten as a bad disk would
        fh.seek((pages // 2) * PAGE)
        fh.write(os.urandom(PAGE))
    code, report = _check(indexed_cli)
    assert code == 1 and not report["ok"], report
    assert report["problems"] and all(p.startswith("catalog: ") for p in report["problems"]), report
    code, report = _check(indexed_cli, "--repair", "--full")
    assert code == 1 and not report["repaired"], report
    assert "which --repair cannot fix" in report["unrepaired"][0]
