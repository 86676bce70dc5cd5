"""labeler as a library: index a folder, label it, search it, learn from reviews, export.

    python examples/quickstart.py [HOME] [IMAGES]

Without arguments it makes a small demo world of generated workshop images in a temporary
folder. Every call returns what the matching ``manage.py ... --json`` command prints.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import labeler
from labeler.demo_world import generate_world
from labeler.errors import LabelerError


def main(home: Path, images: Path) -> dict:
    col = labeler.open(home, model="labeler-tiny")
    indexed = col.index([images])
    labeled = col.label("workshop")
    hits = col.search("metal hammer with wooden handle", k=5)
    alike = col.similar(hits[0]["image_id"], k=3) if hits else []
    try:
        learned = col.learn()
    except LabelerError as exc:  # nobody has reviewed anything yet: labels stay zero-shot
        learned = {"error": str(exc)}
    exported = col.export("coco", home / "labels.coco.json", force=True)
    return {"indexed": indexed["embedded"], "labeled": labeled["labeled"], "hits": hits, "similar": alike,
            "learned": learned, "exported": exported, "stats": col.stats()}


if __name__ == "__main__":
    work = Path(tempfile.mkdtemp(prefix="labeler-example-"))
    home = Path(sys.argv[1]) if len(sys.argv) > 1 else work / "home"
    if len(sys.argv) > 2:
        images = Path(sys.argv[2])
    else:
        images = work / "images"
        generate_world(images, 24, seed=1, size=64)
    print(json.dumps(main(home, images), indent=2))
