"""Logging in through the real login form; nothing is visible without it."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import PASSWORD, Accounts, Contexts, expect, login

pytestmark = pytest.mark.browser


def test_anonymous_visit_is_sent_to_login_and_comes_back_after(contexts: Contexts) -> None:
    page = contexts.page()
    page.goto("/review?group=concept")
    expect(page).to_have_url(re.compile(r"/auth/login\?next=/review"))
    expect(page.get_by_test_id("login-form")).to_be_visible()
    expect(page.get_by_test_id("nav-review")).to_have_count(0)

    page.get_by_test_id("login-username").fill(Accounts.reviewer)
    page.get_by_test_id("login-password").fill(PASSWORD)
    page.get_by_test_id("login-submit").click()

    expect(page).to_have_url(re.compile(r"/review\?group=concept$"))
    expect(page.get_by_test_id("current-user")).to_have_text(f"{Accounts.reviewer} (reviewer)")
    expect(page.get_by_test_id("queue-grid")).to_be_visible()


def test_wrong_password_is_refused_with_a_message(contexts: Contexts) -> None:
    page = contexts.page()
    page.goto("/auth/login")
    page.get_by_test_id("login-username").fill(Accounts.reviewer)
    page.get_by_test_id("login-password").fill("not the password")
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("login-error")).to_have_text("Wrong user name or password.")
    expect(page.get_by_test_id("current-user")).to_have_count(0)
    # Still anonymous: the API refuses too.
    assert page.request.get("/api/stats").status == 401


def test_logout_ends_the_session(contexts: Contexts) -> None:
    page = contexts.page(Accounts.reviewer)
    expect(page.get_by_test_id("nav-lab")).to_have_count(0)  # reviewers get no prompt lab
    page.get_by_test_id("logout").click()
    expect(page.get_by_test_id("login-form")).to_be_visible()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/auth/login"))


def test_admin_sees_the_prompt_lab(contexts: Contexts) -> None:
    page = contexts.page()
    login(page, Accounts.admin)
    expect(page.get_by_test_id("current-user")).to_have_text(f"{Accounts.admin} (admin)")
    page.get_by_test_id("nav-lab").click()
    expect(page.get_by_test_id("lab-form")).to_be_visible()
