"""The delivery history as the real web and worker processes write it: every answered delivery,
its job's life, refusals, and a push run again from it."""

from __future__ import annotations

import subprocess
import uuid

import redis
from rq import Queue
from rq.job import JobStatus

from ghapp.core import history, metrics
from ghapp.core.push_job import PushJob
from ghapp.core.retry import queue_again
from ghapp.core.settings import load_settings
from tests.conftest import APP_ID
from tests.e2e.conftest import JOB_TIMEOUT, Stack
from tests.support import child_env, failure_text, ghapp, wait_for, wait_job
from webapp.accept import PushQueue


def entry(stack: Stack, delivery: str) -> dict:
    return entry_in(stack.redis, delivery)


def entry_in(connection: redis.Redis, delivery: str) -> dict:
    found = history.get(connection, history.entry_id(APP_ID, delivery))
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


def test_unsigned_headers_cannot_make_metric_labels_of_their_own(stack: Stack):
    body = {"zen": "Design for failure.", "hook_id": 2}
    for n in range(5):
        answer = stack.post(body, event=f"made_up_{n}_{uuid.uuid4().hex[:6]}")
        assert answer.json()["status"] == "ignored"
    events = {
        labels["event"]
        for labels, _ in metrics.read_all(stack.redis).counters["ghapp_webhooks_total"]
    }
    assert not any(event.startswith("made_up") for event in events)
    assert "other" in events


def test_a_delivery_ignored_then_queued_on_redelivery_becomes_the_queued_push(
    own_redis_url: str,
):
    connection = redis.Redis.from_url(own_redis_url)
    delivery = str(uuid.uuid4())
    history.record(
        connection,
        app=APP_ID,
        delivery=delivery,
        fields={"event": "push", "outcome": "ignored", "reason": "branch dev does not match"},
    )
    push = PushJob(
        delivery=delivery,
        installation_id=7,
        repository_id=1,
        repository="o/r",
        clone_url="https://github.com/o/r.git",
        ref="refs/heads/dev",
        before="0" * 40,
        sha="a" * 40,
    )
    job_id = PushQueue(Queue("ghapp", connection=connection), job_timeout=60).enqueue(
        push, b"{}", app=APP_ID
    )
    assert job_id is not None
    recorded = entry_in(connection, delivery)
    assert (recorded["outcome"], recorded["status"], recorded["job_id"]) == ("queued", 202, job_id)
    assert recorded["push"]["sha"] == "a" * 40
    assert "reason" not in recorded
    assert [e["state"] for e in recorded["events"]] == ["ignored", "queued"]


def test_retry_takes_delivery_ids_never_patterns(stack: Stack, tmp_path):
    done = subprocess.run(
        ghapp(["retry", "*"]),
        env=child_env({"REDIS_URL": stack.env["REDIS_URL"]}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "is not a delivery id" in line


def test_retry_failed_runs_each_failure_again_once_through_its_newest_run(
    stack: Stack, fresh_repo_name: str, tmp_path
):
    repo = stack.repository(fresh_repo_name, files={"ghapp-test.sh": "exit 5\n"})
    sha = stack.simulator.branch_tip(repo.full_name)
    delivery = str(uuid.uuid4())
    answer = stack.post(
        stack.simulator.push_payload(repo.full_name, before=None, after=sha), delivery=delivery
    )
    wait_job(stack.redis, answer.json()["job_id"], timeout=JOB_TIMEOUT + 30)
    operator = child_env({"REDIS_URL": stack.env["REDIS_URL"]})

    def retry_failed() -> list[str]:
        done = subprocess.run(
            ghapp(["retry", "--failed", "--since", "10m"]),
            env=operator,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return [line for line in done.stdout.splitlines() if line.startswith(delivery)]

    (first,) = retry_failed()
    again = first.split(" -> ", 1)[1].split(",", 1)[0]
    wait_for(lambda: entry(stack, again).get("job_state") == "failed", 30, "the run again to fail")
    (second,) = retry_failed()  # the run again's failure, not the original's a second time
    assert second.startswith(f"{again} -> ")
