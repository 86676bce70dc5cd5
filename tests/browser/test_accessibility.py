"""axe-core on every page of the UI: no violation of impact serious or critical.

axe-core comes with ``axe-playwright-python`` (the test extras), never from a CDN. Besides its
default rules (WCAG 2.0-2.2 A and AA and best practices), ``target-size`` is on: every control is
at least 24 × 24 px or spaced as if it were (WCAG 2.2, 2.5.8).
"""

from __future__ import annotations

import re

import pytest
from axe_playwright_python.sync_playwright import Axe

from tests.browser.conftest import VIEWPORT, Contexts, queue_url
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


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("name", list(PAGES))
def test_no_serious_or_critical_axe_violation(contexts: Contexts, name: str, scheme: str) -> None:
    # axe is injected by evaluating its source, which the pages' CSP (no unsafe-eval) would refuse.
    # Dark: the system's (prefers-color-scheme), which a user's default theme ("system") follows.
    context = contexts.browser.new_context(base_url=contexts.demo.url, viewport=VIEWPORT, bypass_csp=True,
                                           color_scheme=scheme)
    contexts.opened.append(context)
    page = visit(context, name)
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert (background == "rgb(18, 21, 28)") == (scheme == "dark"), background  # the theme is on
    results = Axe().run(page, options=AXE_OPTIONS).response
    assert results["testEngine"]["version"].startswith("4.")
    assert results["url"].startswith(contexts.demo.url) and len(results["passes"]) > 10  # it checked our page
    problems = blocking_violations(results)
    assert not problems, f"{name}:\n" + "\n".join(problems)


# Computed focus ring of the focused element: a solid, opaque outline at least 2 px wide.
FOCUS_RING = """() => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  const alpha = style.outlineColor.startsWith('rgba') ? parseFloat(style.outlineColor.split(',')[3]) : 1;
  return {tag: el.tagName.toLowerCase(), id: el.id, text: el.textContent.trim().slice(0, 40),
          style: style.outlineStyle, width: parseFloat(style.outlineWidth), alpha};
}"""


def _assert_solid_ring(ring: dict) -> None:
    assert ring["style"] == "solid" and ring["width"] >= 2 and ring["alpha"] == 1, ring


def test_skip_link_landmarks_and_a_visible_focus_ring(contexts: Contexts) -> None:
    page = visit(contexts.new(), "dashboard")
    page.keyboard.press("Tab")  # the first stop on every page without an autofocus
    ring = page.evaluate(FOCUS_RING)
    assert ring["text"] == "Skip to main content"
    _assert_solid_ring(ring)
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"

    page.goto(queue_url("concept", status="", sort="id"))  # the main nav and the queue's paging nav
    navs = page.locator("nav")
    names = [navs.nth(i).get_attribute("aria-label") for i in range(navs.count())]
    assert all(names) and len(set(names)) == len(names) >= 2, names
    for path, current in (("/", "nav-dashboard"), ("/review", "nav-review"), ("/images/1", "nav-review"),
                          ("/search", "nav-search"), ("/lab", "nav-lab")):
        page.goto(path)
        marked = page.locator("header nav [aria-current=page]")
        assert marked.count() == 1 and marked.get_attribute("data-testid") == current, path

    # Keyboard focus on controls and on the queue's cards is the same solid ring, never a faint glow.
    page.goto("/search")
    page.get_by_test_id("search-submit").focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    _assert_solid_ring(page.evaluate(FOCUS_RING))
    page = visit(contexts.new(), "queue")
    page.get_by_test_id("card").first.focus()
    page.keyboard.press("j")
    ring = page.evaluate(FOCUS_RING)
    assert ring["tag"] == "article", ring
    _assert_solid_ring(ring)


def test_images_outside_the_queue_are_described_by_file_name_and_labels(contexts: Contexts) -> None:
    context = contexts.new()
    page = visit(context, "search")
    hits = page.get_by_test_id("hit")
    for i in range(min(hits.count(), 5)):
        hit = hits.nth(i)
        alt = hit.locator("img").get_attribute("alt")
        label = hit.locator("ul.hit-labels li").first.text_content()  # "concept: hammer proposed" (folded under "all N labels")
        group, value = label.split(":")[0], label.split(":")[1].split()[0]
        assert re.match(r"^[\w.-]+\.(png|jpe?g|webp|gif|bmp|tiff?): ", alt) and f"{group} {value}" in alt, alt

    page.goto(hits.first.locator("a").first.get_attribute("href"))  # the image link (the card has its own)
    alt = page.get_by_test_id("full-image").get_attribute("alt")
    name = page.get_by_test_id("image-path").inner_text().split(" · ")[0].rsplit("/", 1)[-1]
    value = page.get_by_test_id("label-concept").get_by_test_id("label-value").inner_text()
    assert alt.startswith(f"{name}: ") and f"concept {value}" in alt, alt

    page = visit(context, "lab")
    alt = page.get_by_test_id("lab-match").first.locator("img").get_attribute("alt")
    assert re.match(r"^[\w.-]+\.(png|jpe?g|webp|gif|bmp|tiff?): hammer 0\.\d{3}, labeled \w+", alt), alt


def test_queue_controls_are_named_by_what_they_act_on(contexts: Contexts) -> None:
    page = visit(contexts.new(), "queue")
    cards = page.get_by_test_id("card")
    assert cards.count() >= 10
    for control in ("select", "accept", "correct", "reject", "skip"):
        names = [cards.nth(i).get_by_test_id(control).get_attribute("aria-label") for i in range(cards.count())]
        # Each names its image: never 48 checkboxes called "select" or 48 buttons called "Accept".
        assert all(names) and len(set(names)) == len(names), (control, names[:3])
    for img in page.locator("[data-testid=card] img").all()[:10]:
        assert not re.fullmatch(r"image \d+", img.get_attribute("alt") or ""), img.get_attribute("alt")
