"""Bounded work per request: search text and prompt caps, search texts not kept in the catalog,
per-user rate limits on search and decisions (429 with Retry-After), and searches running at once
(429 per user, 503 in all). Each limit at its edge."""

from __future__ import annotations

import time

from sqlalchemy import func, select, update

from labeler import search
from labeler.store import db
from labeler.store.catalog import PromptEmbedding, User
from labeler.web import create_app
from labeler.web.rate_limit import RateLimiter, fit_search_slots
from tests.web.conftest import Users, login, post_json


def _app(web_config, **limits):
    return create_app(web_config.with_(**limits), {"TESTING": True})


def _cached_texts(config) -> int:
    with db.session_scope(config) as s:
        return s.scalar(select(func.count()).select_from(PromptEmbedding))


def test_search_text_is_capped_at_its_length_and_term_count(client, web_config):
    login(client, Users.reviewer)
    at_limit = ("a hammer " * 200)[:1000]
    assert client.get("/api/search", query_string={"q": at_limit, "k": 3}).status_code == 200
    over = client.get("/api/search", query_string={"q": at_limit + "x", "k": 3})
    assert over.status_code == 400
    assert over.get_json()["error"] == "q: the query is 1,001 characters; the limit is 1,000 (LABELER_MAX_QUERY_CHARS)"
    page = client.get("/search", query_string={"q": "x" * 5000})
    assert page.status_code == 400 and "LABELER_MAX_QUERY_CHARS" in page.get_data(as_text=True)

    terms = " + ".join(f'"thing {i}"' for i in range(32))
    assert client.get("/api/search", query_string={"q": terms, "k": 3}).status_code == 200
    many = client.get("/api/search", query_string={"q": terms + ' + "one more"', "k": 3})
    assert many.status_code == 400
    assert "the query has 33 terms; the limit is 32 (LABELER_MAX_QUERY_TERMS)" in many.get_json()["error"]


def _search_texts(config) -> set[str]:
    with db.session_scope(config) as s:
        return set(s.scalars(select(PromptEmbedding.text).where(PromptEmbedding.query_used_at.is_not(None))))


def test_search_texts_are_kept_in_the_catalog_under_an_lru_cap(web_config):
    app = _app(web_config, query_cache_texts=3)
    client = app.test_client()
    login(client, Users.reviewer)
    prompts = _cached_texts(web_config)
    texts = [f"a made-up text number {i}" for i in range(4)]
    first = [client.get("/api/search", query_string={"q": t}).get_json()["hits"] for t in texts[:3]]
    assert _search_texts(web_config) == set(texts[:3])
    with db.session_scope(web_config) as s:  # two hours pass, text 0 the oldest
        for age, text in ((7300, texts[0]), (7200, texts[1]), (7100, texts[2])):
            s.execute(update(PromptEmbedding).where(PromptEmbedding.text == text)
                      .values(query_used_at=time.time() - age))
    search._query_cache.clear()  # as in another server process: this one remembers its recent vectors
    assert client.get("/api/search", query_string={"q": texts[0]}).get_json()["hits"] == first[0]  # used again
    client.get("/api/search", query_string={"q": texts[3]})
    assert _search_texts(web_config) == {texts[0], texts[2], texts[3]}  # text 1, least recently used, dropped
    assert _cached_texts(web_config) == prompts + 3  # the prompts' rows are all still there
    assert client.get("/api/search", query_string={"q": texts[1]}).get_json()["hits"] == first[1]


def test_searches_past_the_per_user_rate_are_429_with_retry_after(web_config):
    app = _app(web_config, search_per_minute=3)
    reviewer, other = app.test_client(), app.test_client()
    login(reviewer, Users.reviewer)
    login(other, Users.second)
    for _ in range(3):
        assert reviewer.get("/api/search?q=hammer&k=2").status_code == 200
    refused = reviewer.get("/api/search?q=hammer&k=2")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 20  # a token comes back every 20 s at 3 a minute
    assert "3 a minute per user (LABELER_SEARCH_PER_MINUTE)" in refused.get_json()["error"]
    assert reviewer.get("/search?q=hammer").status_code == 429  # the page counts too
    assert reviewer.get("/api/images/3/similar").status_code == 429
    assert other.get("/api/search?q=hammer&k=2").status_code == 200  # another user is not held up
    assert reviewer.get("/api/stats").status_code == 200  # nor is anything else


def test_decisions_past_the_per_user_rate_are_429_and_change_nothing(web_config):
    app = _app(web_config, decisions_per_minute=2)
    client = app.test_client()
    csrf = login(client, Users.reviewer)
    labels = client.get("/api/labels?group=concept&limit=3").get_json()["labels"]
    for label in labels[:2]:
        done = post_json(client, f"/api/labels/{label['id']}/review", {"action": "accept", "version": label["version"]},
                         csrf)
        assert done.status_code == 200
    third = labels[2]
    refused = post_json(client, f"/api/labels/{third['id']}/review", {"action": "accept", "version": third["version"]},
                        csrf)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert client.get(f"/api/labels/{third['id']}").get_json()["version"] == third["version"]  # not decided
    assert post_json(client, "/api/review/undo", {}, csrf).status_code == 429


def test_the_rate_limiter_refills_at_its_rate():
    now = [0.0]
    limiter = RateLimiter(6, clock=lambda: now[0])  # a token every 10 s, 6 at once
    assert [limiter.take("u") for _ in range(6)] == [0.0] * 6
    assert limiter.take("u") == 10.0
    now[0] = 9.9
    assert 0 < limiter.take("u") < 0.2
    now[0] = 10.0
    assert limiter.take("u") == 0.0
    assert limiter.take("v") == 0.0  # per key


def test_limits_are_settings_with_their_defaults():
    from labeler.config import Config

    config = Config.from_env({})
    assert (config.max_query_chars, config.max_query_terms, config.max_prompt_chars) == (1000, 32, 400)
    assert (config.search_per_minute, config.decisions_per_minute) == (120, 600)
    assert Config.from_env({"LABELER_SEARCH_PER_MINUTE": "7"}).search_per_minute == 7


def _lab_form(csrf: str, prompts: str) -> dict:
    from labeler.core.prompts import load_prompt_set

    return {"csrf_token": csrf, "set": "workshop", "group": "concept", "option": "hammer", "prompts": prompts,
            "strategy": "weighted", "base": load_prompt_set("workshop").content_hash}


def test_the_lab_refuses_what_label_would_refuse_before_writing_anything(client, web_config):
    csrf = login(client, Users.admin)
    too_long = client.post("/lab/save", data=_lab_form(csrf, "a hammer " + "x" * 392))  # 401 characters
    assert too_long.status_code == 400
    assert "a prompt of 401 characters; the limit is 400 (LABELER_MAX_PROMPT_CHARS)" in too_long.get_data(as_text=True)
    too_big = client.post("/lab/save", data=_lab_form(csrf, "\n".join(f"a hammer number {i} " + "y" * 300
                                                                      for i in range(3500))))  # 1.1 MB
    assert too_big.status_code == 400 and "larger than 1 MB" in too_big.get_data(as_text=True)
    assert not (web_config.home / "prompt_sets" / "workshop.yaml").exists()  # nothing half-done
    assert client.get("/lab?set=workshop&group=concept&option=hammer").status_code == 200
    at_limit = client.post("/lab/save", data=_lab_form(csrf, "a hammer " + "x" * 391))  # 400 characters
    assert at_limit.status_code == 302


def test_the_queue_lists_only_the_most_used_typed_values(web_config):
    import re

    from labeler.review import decisions

    app = _app(web_config, max_free_values=5)
    client = app.test_client()
    login(client, Users.reviewer)
    labels = client.get("/api/labels?group=concept&limit=9").get_json()["labels"]
    typed = [f"typed {i}" for i in range(8)] + ["typed 7"]  # typed 7 twice: the most used
    with db.session_scope(web_config) as s:
        for label, value in zip(labels, typed):
            decisions.decide(s, label["id"], "correct", None, label["version"], value)
    html = client.get("/review?group=concept").get_data(as_text=True)
    listed = set(re.findall(r"<option[^>]*>(typed \d)</option>", html))
    assert len(listed) == 5 and "typed 7" in listed
    filtered = client.get("/review?group=concept&value=typed+0&status=corrected").get_data(as_text=True)
    assert "typed 0</option>" in filtered  # what is filtered on is listed even past the cap


def test_a_search_past_its_time_budget_is_503(web_config):
    app = _app(web_config, search_budget_ms=1)  # no new text is encoded within a millisecond
    client = app.test_client()
    login(client, Users.reviewer)
    slow = client.get("/api/search", query_string={"q": "a text never encoded before, 1 ms is not enough"})
    assert slow.status_code == 503 and "LABELER_SEARCH_BUDGET_MS" in slow.get_json()["error"]
    page = client.get("/search", query_string={"q": "another new text that takes more than 1 ms"})
    assert page.status_code == 503 and "LABELER_SEARCH_BUDGET_MS" in page.get_data(as_text=True)
    fine = _app(web_config).test_client()  # the default budget, 5 s
    login(fine, Users.reviewer)
    assert fine.get("/api/search", query_string={"q": "a third new text"}).status_code == 200


def _user_id(config, name: str) -> int:
    with db.session_scope(config) as s:
        return s.scalar(select(User.id).where(User.name == name))


def test_searches_running_at_once_are_capped_per_user_429_and_in_all_503_never_queued(web_config):
    """A search in flight holds a slot (taken here as a long search would hold it): past a user's
    LABELER_SEARCHES_PER_USER their next one is 429, past LABELER_SEARCHES_AT_ONCE anyone's is 503,
    both at once with Retry-After: 1, while every other request goes on; a slot given back is free."""
    app = _app(web_config, searches_per_user=2, searches_at_once=3)
    slots = app.extensions["labeler_search_slots"]
    reviewer, other = app.test_client(), app.test_client()
    login(reviewer, Users.reviewer)
    login(other, Users.second)
    rita, rob = _user_id(web_config, Users.reviewer), _user_id(web_config, Users.second)
    assert slots.enter(rita) is None  # one long search of rita's running: her next one is her second
    assert reviewer.get("/api/search?q=hammer&k=2").status_code == 200
    assert slots.enter(rita) is None  # two of hers running
    refused = reviewer.get("/api/search?q=hammer&k=2")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert "2 per user (LABELER_SEARCHES_PER_USER)" in refused.get_json()["error"]
    assert reviewer.get("/search?q=hammer").status_code == 429  # the page and similar take slots too
    assert reviewer.get("/api/images/3/similar").status_code == 429
    assert reviewer.get("/api/stats").status_code == 200  # nothing else is held up
    assert other.get("/api/search?q=hammer&k=2").status_code == 200  # rob's first: the third running
    assert slots.enter(rob) is None  # three running in all
    busy = other.get("/api/search?q=hammer&k=2")
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
    assert "3 searches are running (LABELER_SEARCHES_AT_ONCE)" in busy.get_json()["error"]
    slots.leave(rob)
    assert other.get("/api/search?q=hammer&k=2").status_code == 200  # a slot given back is free again
    slots.leave(rita)
    assert reviewer.get("/api/search?q=hammer&k=2").status_code == 200
    slots.leave(rita)
    assert slots.enter(rita) is None and slots.enter(rita) is None  # the searches answered gave theirs back
    assert slots.enter(rita) == slots.USER


def test_serve_keeps_searches_to_half_its_request_threads(web_config):
    app = _app(web_config, searches_at_once=4)
    assert fit_search_slots(app, 8) == 4
    assert fit_search_slots(app, 3) == 1  # 3 threads: one may search, two stay for everything else
    assert fit_search_slots(create_app(web_config, {"TESTING": True}), 1) == 1
