"""LOG_FORMAT=json through the real processes: every line a JSON object, the worker's lines about
a job (RQ's own included) carrying its delivery, and a failing step logged in one line."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.e2e.conftest import JOB_TIMEOUT, Stack
from tests.support import wait_for, wait_job


def push(stack: Stack, repo_name: str) -> tuple[str, str]:
    sha = stack.simulator.branch_tip(repo_name)
    payload = stack.simulator.push_payload(repo_name, before=None, after=sha)
    delivery = str(uuid.uuid4())
    answer = stack.post(payload, delivery=delivery)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    wait_job(stack.redis, job_id, timeout=JOB_TIMEOUT + 30)
    return delivery, job_id


def lines_of(text: str) -> list[dict]:
    parsed = []
    for line in text.splitlines():
        if line.strip():
            parsed.append(json.loads(line))  # fails the test on any line that is not JSON
    return parsed


@pytest.mark.stack(overrides={"LOG_FORMAT": "json"}, workers=1)
def test_every_line_is_json_and_the_workers_lines_about_a_job_carry_its_delivery(
    own_stack: Stack, fresh_repo_name: str
) -> None:
    ok = own_stack.repository(fresh_repo_name + "-ok")
    failing = own_stack.repository(
        fresh_repo_name + "-fails", files={"ghapp-test.sh": "echo first; echo second >&2; exit 3\n"}
    )
    delivered, job_id = push(own_stack, ok.full_name)
    failed, failed_job = push(own_stack, failing.full_name)
    worker = own_stack.workers[0]
    wait_for(lambda: "Job OK" in worker.output(), 10, "RQ's line for the job")
    time.sleep(0.5)  # the failed job's lines are written by now
    web = lines_of(own_stack.web.output())
    worker_lines = lines_of(worker.output())
    for line in web + worker_lines:
        assert {"time", "level", "process", "logger", "message", "delivery", "job"} <= set(line)
    assert any(line["logger"].startswith("gunicorn") for line in web)  # gunicorn's too

    about = [line for line in worker_lines if line["job"] == job_id]
    assert {line["delivery"] for line in about} == {delivered}
    messages = " ".join(line["message"] for line in about if line["logger"].startswith("rq."))
    assert "Job OK" in messages
    assert "push " in messages  # the line RQ logs as it takes the job

    errors = [line for line in worker_lines if line["level"] == "ERROR"]
    mine = [line for line in errors if line["job"] == failed_job]
    assert mine, errors
    assert all(line["delivery"] == failed for line in mine)
    one = [line for line in mine if "output's tail: first ⏎ second" in line["message"]]
    assert len(one) == 1, mine
    assert "PROCESS_COMMAND exited with status 3" in one[0]["message"]
    assert not [line for line in worker_lines if "Traceback" in json.dumps(line)]
