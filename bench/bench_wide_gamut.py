"""Wide-gamut colour fidelity: P3 and Adobe RGB photos against the same photo in sRGB.

For each of N generated photos (saturated, as a phone's are) it writes an sRGB JPEG and the same
pixels converted into Display P3 and Adobe RGB (JPEG and PNG, profile embedded), then compares,
before (the file's pixels taken as sRGB, as labeler did) and after (labeler's decode, which converts
the profile to sRGB): the thumbnails' colours (32 x 32 box means, mean |difference| in /255) and
the labeler-tiny vectors' cosine to the sRGB photo's. Fidelity, not speed: no timing.

    python bench/bench_wide_gamut.py [--photos 8]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labeler.encoding.encoder import load_encoder  # noqa: E402
from labeler.encoding.images import decode, model_view, thumbnail_bytes  # noqa: E402
from labeler.encoding.model_spec import TINY_NAME  # noqa: E402
from tests.test_phone_photos import colours, write_wide_gamut  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=8)
    args = parser.parse_args()
    encoder = load_encoder(TINY_NAME, mode="torch")

    def vector(img: Image.Image) -> np.ndarray:
        v = encoder.encode_images([encoder.preprocess(model_view(img))])[0]
        return v / np.linalg.norm(v)

    def thumb(img: Image.Image) -> np.ndarray:
        return colours(Image.open(io.BytesIO(thumbnail_bytes(img, 256))))

    rows: dict[tuple[str, str], list[tuple[float, float]]] = {}
    folder = Path(tempfile.mkdtemp())
    for index in range(args.photos):
        paths = write_wide_gamut(folder, index)
        reference = decode(paths["sRGB"].read_bytes(), 10**9).image
        ref_thumb, ref_vector = thumb(reference), vector(reference)
        for kind, path in paths.items():
            if kind == "sRGB":
                continue
            for when, img in (("before", Image.open(path).convert("RGB")),
                              ("after", decode(path.read_bytes(), 10**9).image)):
                rows.setdefault((kind, when), []).append(
                    (float(np.abs(thumb(img) - ref_thumb).mean()), float(vector(img) @ ref_vector)))
    print(f"{'file':22s} {'':6s} {'thumbnail |diff| /255':>24s} {'cosine to sRGB':>20s}")
    for (kind, when), values in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1] != "before")):
        a = np.array(values)
        print(f"{kind:22s} {when:6s} mean {a[:, 0].mean():5.2f} max {a[:, 0].max():5.2f}"
              f"      min {a[:, 1].min():.4f} mean {a[:, 1].mean():.4f}")


if __name__ == "__main__":
    main()
