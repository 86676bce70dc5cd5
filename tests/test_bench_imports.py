"""Every bench in ``bench/`` still imports: a bench is run rarely, by hand, so a renamed function it
imports (``bench_profile`` imported ``bench_embed.make_photos`` after it moved) goes unnoticed until
someone needs the numbers. Importing runs each module's top level only; ``main()`` is not called.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.parametrize("path", sorted(BENCH.glob("*.py")), ids=lambda p: p.stem)
def test_the_bench_imports(path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # benches import each other by bare name
    spec = importlib.util.spec_from_file_location(f"bench_import_check.{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # a dataclass looks its module up there
    spec.loader.exec_module(module)
    assert callable(getattr(module, "main", None)), f"{path.name} has no main()"
