"""The dashboard in a real headless Chromium against the real processes: a push seen in the list
and on its page, run again with the button, its new job and check run; and who may see it."""

from __future__ import annotations

import time
import uuid

import pytest
import requests
from playwright.sync_api import Browser, Page
from rq import Queue

from ghapp.core import history
from ghapp.core.settings import QUEUE_NAME
from tests.browser import browser, screenshot
from tests.conftest import APP_ID
from tests.e2e.conftest import JOB_TIMEOUT, Stack
from tests.e2e.test_reporting import push
from tests.support import wait_for

__all__ = ["browser"]  # the fixture, used by name

PASSWORD = "dashboard-test-password"
STACK = pytest.mark.stack(overrides={"DASHBOARD_PASSWORD": PASSWORD})


def processed(stack: Stack, entry_id: str) -> dict:
    def ended() -> dict | None:
        entry = history.get(stack.redis, entry_id)
        return entry if entry and entry.get("job_state") == "processed" else None

    return wait_for(ended, 20, f"the job of {entry_id} processed in the history")


def reload_until(page: Page, selector: str, text: str, timeout: float) -> None:
    """Reload ``page`` (the server renders it; no script updates it) until ``selector`` reads
    ``text``."""
    deadline = time.monotonic() + timeout
    while page.inner_text(selector).strip() != text:
        assert time.monotonic() < deadline, f"{selector} still reads {page.inner_text(selector)!r}"
        time.sleep(0.5)
        page.reload()


@STACK
def test_a_push_seen_and_run_again_from_the_dashboard(
    own_stack: Stack, browser: Browser, fresh_repo_name: str
):
    stack = own_stack
    repo = stack.repository(fresh_repo_name)
    delivery, _ = push(stack, repo.full_name)
    entry_id = history.entry_id(APP_ID, delivery)
    processed(stack, entry_id)

    context = browser.new_context(
        http_credentials={"username": "operator", "password": PASSWORD},
        viewport={"width": 1280, "height": 800},
    )
    page = context.new_page()
    assert page.goto(f"{stack.url}/dashboard").status == 200
    row = page.locator(f'tr[data-entry="{entry_id}"]')
    assert repo.full_name in row.inner_text()
    assert row.locator(".outcome").inner_text().startswith("queued")
    assert row.locator(".job-state").inner_text() == "processed"
    assert page.inner_text("#workers-alive") == "2"
    assert page.inner_text("#processed-hour") == "1"
    screenshot(page, "dashboard-deliveries")

    row.locator("a").first.click()
    page.wait_for_url(f"**/dashboard/deliveries/{entry_id}")
    assert page.inner_text("#job-state") == "processed"
    assert page.inner_text("#output").strip().endswith("processed")
    (first_run,) = stack.simulator.check_runs(repo.full_name)
    assert page.get_attribute("#check-run", "href") == first_run["html_url"]
    screenshot(page, "dashboard-delivery")

    page.click("#run-again")
    page.wait_for_url("**/dashboard/deliveries/*-again-*")
    new_entry_id = page.url.rsplit("/", 1)[1]
    assert new_entry_id != entry_id
    reload_until(page, "#job-state", "processed", JOB_TIMEOUT + 30)
    assert "run again from delivery" in page.inner_text("#reason")
    runs = stack.simulator.check_runs(repo.full_name)
    assert len(runs) == 2
    assert runs[1]["external_id"] == new_entry_id.split(":", 1)[1]
    assert page.get_attribute("#check-run", "href") == runs[1]["html_url"]
    screenshot(page, "dashboard-run-again")

    # The original's page links to the run it started; the list shows both.
    page.goto(f"{stack.url}/dashboard/deliveries/{entry_id}")
    assert "new delivery" in page.inner_text("#events")
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(f"{stack.url}/dashboard?repository={repo.full_name}")
    assert page.locator("#deliveries tbody tr").count() == 2
    screenshot(page, "dashboard-narrow")
    assert page.goto(f"{stack.url}/dashboard/deliveries/{APP_ID}:nothing").status == 404
    screenshot(page, "dashboard-not-found")
    context.close()


@STACK
def test_the_dashboard_asks_for_its_password_and_refuses_a_forged_run_again(
    own_stack: Stack, fresh_repo_name: str
):
    stack = own_stack
    repo = stack.repository(fresh_repo_name)
    delivery, _ = push(stack, repo.full_name)
    entry_id = history.entry_id(APP_ID, delivery)
    processed(stack, entry_id)
    for auth in (None, ("operator", "wrong"), ("", PASSWORD + "x")):
        answer = requests.get(f"{stack.url}/dashboard", auth=auth, timeout=10)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == 'Basic realm="ghapp"'

    url = f"{stack.url}/dashboard/deliveries/{entry_id}/run-again"
    auth = ("anyone", PASSWORD)
    for form, headers in (
        ({}, {}),
        ({"csrf_token": f"{int(time.time()) + 60}.{'0' * 64}"}, {}),
        ({"csrf_token": "not-a-token"}, {"Origin": stack.url}),
    ):
        answer = requests.post(url, data=form, headers=headers, auth=auth, timeout=10)
        assert answer.status_code == 403, answer.text
        assert "token is missing, wrong or expired" in answer.text
    assert Queue(QUEUE_NAME, connection=stack.redis).count == 0
    states = [event["state"] for event in history.get(stack.redis, entry_id)["events"]]
    assert "run again" not in states
    assert len(stack.simulator.check_runs(repo.full_name)) == 1


def test_without_a_password_there_is_no_dashboard(stack: Stack):
    for url in ("/dashboard", f"/dashboard/deliveries/{APP_ID}:{uuid.uuid4()}"):
        assert requests.get(stack.url + url, auth=("a", "b"), timeout=10).status_code == 404
    answer = requests.post(f"{stack.url}/dashboard/deliveries/{APP_ID}:x/run-again", timeout=10)
    assert answer.status_code == 404
