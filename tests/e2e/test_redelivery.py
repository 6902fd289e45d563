"""Webhooks sent while ghapp was down are redelivered, through GitHub's own API, exactly once."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Stack
from tests.support import Process, ghapp, healthy, wait_for


def requests_to(stack: Stack, path_end: str) -> int:
    return sum(
        1 for r in stack.simulator.requests if r.method == "GET" and r.path.endswith(path_end)
    )


@pytest.mark.stack(overrides={"REDELIVERY_INTERVAL": "1"}, workers=1)
def test_a_push_sent_while_the_server_was_down_is_redelivered_and_processed_once(
    own_stack: Stack, fresh_repo_name: str
):
    simulator = own_stack.simulator
    repo = own_stack.repository(fresh_repo_name)
    sha = simulator.branch_tip(repo.full_name)
    payload = simulator.push_payload(repo.full_name, before=None, after=sha)
    simulator.webhook_url = own_stack.webhook
    simulator.webhook_secret = b"test-secret"
    try:
        own_stack.stop()  # the whole server is down: web and worker
        lost = simulator.send_webhook("push", payload)
        assert lost.status != "OK"

        # Back up: the web process and a worker, as after a deploy.
        own_stack.web = Process(
            "web-again", ghapp(["web"]), own_stack.env, own_stack.home, own_stack.home / "logs"
        )
        # The web process answers before the worker asks GitHub to redeliver: a redelivery that
        # fails again is not asked for twice.
        wait_for(lambda: healthy(own_stack.url), 30, "the web process to answer again")
        own_stack.workers = []
        own_stack.start_worker("worker-again")

        def processed() -> bool:
            return len(own_stack.record(lost.guid)) >= 1

        wait_for(processed, 60, "the lost push to be redelivered and processed")
        attempts = [d for d in simulator.hook_deliveries if d.guid == lost.guid]
        assert [d.redelivery for d in attempts] == [False, True]
        assert attempts[-1].status == "OK"

        # Later runs of the redelivery job leave it alone: asked once, processed once.
        runs = requests_to(own_stack, "/app/hook/deliveries")
        wait_for(
            lambda: requests_to(own_stack, "/app/hook/deliveries") >= runs + 3,
            30,
            "three more redelivery runs",
        )
        assert len([d for d in simulator.hook_deliveries if d.guid == lost.guid]) == 2
        assert len(own_stack.record(lost.guid)) == 1
        (seen,) = own_stack.record(lost.guid)
        assert seen["sha"] == sha
    finally:
        simulator.webhook_url = None


@pytest.mark.stack(overrides={"REDELIVERY_INTERVAL": "1"}, workers=1)
def test_deliveries_that_succeeded_are_not_redelivered(own_stack: Stack, fresh_repo_name: str):
    simulator = own_stack.simulator
    repo = own_stack.repository(fresh_repo_name)
    payload = simulator.push_payload(
        repo.full_name, before=None, after=simulator.branch_tip(repo.full_name)
    )
    simulator.webhook_url = own_stack.webhook
    simulator.webhook_secret = b"test-secret"
    try:
        delivered = simulator.send_webhook("push", payload)
        assert delivered.status == "OK"
        asked_before = len(simulator.redelivery_requests)
        runs = requests_to(own_stack, "/app/hook/deliveries")
        wait_for(
            lambda: requests_to(own_stack, "/app/hook/deliveries") >= runs + 2,
            30,
            "two redelivery runs",
        )
        assert [d.guid for d in simulator.hook_deliveries].count(delivered.guid) == 1
        assert len(simulator.redelivery_requests) == asked_before
        wait_for(lambda: own_stack.record(delivered.guid), 30, "the push to be processed")
        assert len(own_stack.record(delivered.guid)) == 1
    finally:
        simulator.webhook_url = None
