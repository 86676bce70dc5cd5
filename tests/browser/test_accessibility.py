"""axe-core on every page of the UI: no violation of impact serious or critical.

axe-core comes with ``axe-playwright-python`` (the test extras), never from a CDN. Besides its
default rules (WCAG 2.0-2.2 A and AA and best practices), ``target-size`` is on: every control is
at least 24 × 24 px or spaced as if it were (WCAG 2.2, 2.5.8).
"""

from __future__ import annotations

import pytest
from axe_playwright_python.sync_playwright import Axe

from tests.browser.conftest import VIEWPORT, Contexts
from tests.browser.tour import PAGES, visit

pytestmark = pytest.mark.browser

BLOCKING = ("serious", "critical")
AXE_OPTIONS = {"resultTypes": ["violations"], "rules": {"target-size": {"enabled": True}}}


def blocking_violations(results: dict) -> list[str]:
    """One line per serious or critical violation: rule, impact, and the first nodes' selectors and why."""
    lines = []
    for v in results["violations"]:
        if v["impact"] in BLOCKING:
            nodes = "; ".join(f"{n['target']}: {n.get('failureSummary', '').splitlines()[-1].strip()}"
                              for n in v["nodes"][:4])
            lines.append(f"{v['id']} ({v['impact']}, {len(v['nodes'])} nodes): {nodes}")
    return lines


@pytest.mark.parametrize("name", list(PAGES))
def test_no_serious_or_critical_axe_violation(contexts: Contexts, name: str) -> None:
    # axe is injected by evaluating its source, which the pages' CSP (no unsafe-eval) would refuse.
    context = contexts.browser.new_context(base_url=contexts.demo.url, viewport=VIEWPORT, bypass_csp=True)
    contexts.opened.append(context)
    page = visit(context, name)
    results = Axe().run(page, options=AXE_OPTIONS).response
    assert results["testEngine"]["version"].startswith("4.")
    assert results["url"].startswith(contexts.demo.url) and len(results["passes"]) > 10  # it checked our page
    problems = blocking_violations(results)
    assert not problems, f"{name}:\n" + "\n".join(problems)
