"""The delivery history as the real web and worker processes write it: every answered delivery,
its job's life, refusals, and a push run again from it."""

from __future__ import annotations

import uuid

from rq.job import JobStatus

from ghapp.core import history
from ghapp.core.retry import queue_again
from ghapp.core.settings import load_settings
from tests.conftest import APP_ID
from tests.e2e.conftest import JOB_TIMEOUT, Stack
from tests.support import failure_text, wait_for, wait_job


def entry(stack: Stack, delivery: str) -> dict:
    found = history.get(stack.redis, history.entry_id(APP_ID, delivery))
    assert found is not None, f"no history entry for {delivery}"
    return found


def test_a_push_and_its_job_are_in_the_history(stack: Stack, fresh_repo_name: str):
    repo = stack.repository(fresh_repo_name)
    sha = stack.simulator.branch_tip(repo.full_name)
    payload = stack.simulator.push_payload(repo.full_name, before=None, after=sha)
    delivery = str(uuid.uuid4())
    answer = stack.post(payload, delivery=delivery)
    job = wait_job(stack.redis, answer.json()["job_id"], timeout=JOB_TIMEOUT + 30)
    assert job.get_status() == JobStatus.FINISHED, failure_text(job)
    again = stack.post(payload, delivery=delivery)  # GitHub's redelivery of it
    assert again.json()["status"] == "duplicate"

    recorded = wait_for(
        lambda: (e := entry(stack, delivery)) and e.get("job_state") == "processed" and e,
        10,
        "the job's end in the history",
    )
    assert (recorded["event"], recorded["repository"], recorded["ref"], recorded["sha"]) == (
        "push",
        repo.full_name,
        "refs/heads/main",
        sha,
    )
    assert (recorded["outcome"], recorded["status"], recorded["job_id"]) == ("queued", 202, job.id)
    assert recorded["seconds_fetch"] > 0
    assert "processed" in recorded["output"]
    (check_run,) = stack.simulator.check_runs(repo.full_name)
    assert recorded["check_run_url"] == check_run["html_url"]
    assert recorded["conclusion"] == "success"
    states = [e["state"] for e in recorded["events"]]
    assert states == ["queued", "started", "processed", "duplicate"]
    assert "payload" not in recorded["push"]
    assert "payload_key" not in recorded["push"]


def test_a_failed_job_says_why_in_one_line(stack: Stack, fresh_repo_name: str):
    repo = stack.repository(fresh_repo_name, files={"ghapp-test.sh": "echo nope; exit 4\n"})
    sha = stack.simulator.branch_tip(repo.full_name)
    delivery = str(uuid.uuid4())
    answer = stack.post(
        stack.simulator.push_payload(repo.full_name, before=None, after=sha), delivery=delivery
    )
    wait_job(stack.redis, answer.json()["job_id"], timeout=JOB_TIMEOUT + 30)
    recorded = wait_for(
        lambda: (e := entry(stack, delivery)) and e.get("job_state") == "failed" and e,
        10,
        "the job's failure in the history",
    )
    assert recorded["error"] == "PROCESS_COMMAND exited with status 4"
    assert "nope" in recorded["output"]
    assert [e["delivery"] for e in history.recent(stack.redis, 50, outcome="failed")].count(
        delivery
    ) == 1


def test_ignored_and_refused_deliveries_are_recorded_and_refusals_logged(stack: Stack):
    ping = str(uuid.uuid4())
    assert stack.post({"zen": "Keep it simple.", "hook_id": 1}, event="ping", delivery=ping).ok
    recorded = entry(stack, ping)
    assert (recorded["outcome"], recorded["reason"], recorded["status"]) == ("ignored", "ping", 200)

    bad = str(uuid.uuid4())
    logged = stack.log_mark()
    refused = stack.post({"zen": "x"}, event="ping", delivery=bad, secret=b"wrong")
    assert refused.status_code == 401
    (newest,) = [r for r in history.refusals(stack.redis, 20) if r["delivery"] == bad]
    assert newest["status"] == 401
    assert "does not match" in newest["reason"]
    lines = wait_for(
        lambda: [line for line in stack.logs_since(logged).splitlines() if bad in line],
        5,
        "the refusal's log line",
    )
    assert "WARNING" in lines[0]
    assert "refused with 401" in lines[0]


def test_a_push_run_again_from_its_entry_gets_a_fresh_job_and_check_run(
    stack: Stack, fresh_repo_name: str
):
    repo = stack.repository(fresh_repo_name)
    sha = stack.simulator.branch_tip(repo.full_name)
    delivery = str(uuid.uuid4())
    answer = stack.post(
        stack.simulator.push_payload(repo.full_name, before=None, after=sha), delivery=delivery
    )
    wait_job(stack.redis, answer.json()["job_id"], timeout=JOB_TIMEOUT + 30)
    original = entry(stack, delivery)

    settings = load_settings({"JOB_TIMEOUT": str(JOB_TIMEOUT)})
    again = queue_again(stack.redis, original, settings)
    job = wait_job(stack.redis, again.job_id, timeout=JOB_TIMEOUT + 30)
    assert job.get_status() == JobStatus.FINISHED, failure_text(job)
    assert (job.return_value()["sha"], job.return_value()["delivery"]) == (sha, again.delivery)
    rerun = wait_for(
        lambda: (e := entry(stack, again.delivery)) and e.get("job_state") == "processed" and e,
        10,
        "the run again in the history",
    )
    assert rerun["event"] == "retry"
    assert delivery in rerun["reason"]
    assert [c["external_id"] for c in stack.simulator.check_runs(repo.full_name, sha)] == [
        delivery,
        again.delivery,
    ]
    assert "run again" in [e["state"] for e in entry(stack, delivery)["events"]]
