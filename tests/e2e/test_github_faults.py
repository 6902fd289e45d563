"""GitHub misbehaving under the real processes: 5xx, rate limits, refusals, clock skew, a token
git does not know yet or no longer accepts, and an API that cannot be reached at all."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import pytest
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry

from ghapp.core.redis_keys import report_fallback
from ghapp.local import free_port
from ghapp.simulator.models import MintRecord, RequestRecord
from tests.conftest import INSTALLATION_ID
from tests.e2e.conftest import JOB_TIMEOUT, Stack
from tests.support import failure_text, wait_for, wait_job

TOKEN_PATH = f"/api/v3/app/installations/{INSTALLATION_ID}/access_tokens"
CLOCK_OFFSET_KEY = "ghapp:clock-offset"
QUEUE = "ghapp"
# What GitHub sends with a refused git request.
GIT_401 = {"WWW-Authenticate": 'Basic realm="GitHub"'}


def enqueue_push(stack: Stack, repo_name: str, installation_id: int | None = None) -> str:
    """Post a push of the branch tip of ``repo_name``; the id of the job it was queued as."""
    sha = stack.simulator.branch_tip(repo_name, "main")
    payload = stack.simulator.push_payload(
        repo_name, before=None, after=sha, installation_id=installation_id
    )
    answer = stack.post(payload, delivery=str(uuid.uuid4()))
    assert answer.status_code == 202, answer.text
    return answer.json()["job_id"]


def push(stack: Stack, repo_name: str, installation_id: int | None = None) -> Job:
    """Push the tip of ``repo_name`` and wait for its job to finish or fail."""
    job_id = enqueue_push(stack, repo_name, installation_id)
    return wait_job(stack.redis, job_id, timeout=JOB_TIMEOUT + 30)


def mints_for(stack: Stack, repository_id: int) -> list[MintRecord]:
    """The fetch's tokens minted for exactly this repository (reports mint their own)."""
    return [
        m
        for m in stack.simulator.issued_tokens
        if m.repository_ids == (repository_id,) and "contents" in m.permissions
    ]


def requests_since(stack: Stack, mark: int, method: str, prefix: str) -> list[RequestRecord]:
    """Requests the simulator answered after the ``mark``-th, by method (``"*"``: any) and path."""
    return [
        r
        for r in stack.simulator.requests[mark:]
        if method in ("*", r.method) and r.path.startswith(prefix)
    ]


def basic_token(record: RequestRecord) -> str | None:
    """The password of a request's ``Authorization: Basic`` header (git sends the token so)."""
    header = next((v for k, v in record.headers.items() if k.lower() == "authorization"), "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    return base64.b64decode(encoded).decode().partition(":")[2]


def assert_failed_at_once(job: Job, stack: Stack) -> str:
    """The job failed for good on its first run (no retry scheduled); its failure text."""
    assert job.get_status() == JobStatus.FAILED, job.get_status()
    fetched = Job.fetch(job.id, connection=stack.redis)
    assert fetched.retries_left == 0, fetched.retries_left
    assert job.id not in ScheduledJobRegistry(queue=Queue(QUEUE, connection=stack.redis))
    return failure_text(fetched)


# Token endpoint -------------------------------------------------------------------------------


def test_token_endpoint_5xx_is_retried_in_place(stack: Stack, fresh_repo_name: str):
    repo = stack.repository(fresh_repo_name)
    mark = len(stack.simulator.requests)
    stack.simulator.inject_failure("POST", TOKEN_PATH, 502, times=2)
    job = push(stack, repo.full_name)
    assert job.get_status() == JobStatus.FINISHED, failure_text(job)
    assert job.return_value()["status"] == "processed"
    assert len(mints_for(stack, repo.id)) == 1
    posts = requests_since(stack, mark, "POST", TOKEN_PATH)
    # The check run's token (retried in place through both 502s), then the fetch's.
    assert [r.status for r in posts] == [502, 502, 201, 201]


def test_short_rate_limit_on_token_endpoint_is_waited_out(stack: Stack, fresh_repo_name: str):
    repo = stack.repository(fresh_repo_name)
    mark = len(stack.simulator.requests)
    stack.simulator.inject_failure(
        "POST",
        TOKEN_PATH,
        429,
        times=1,
        headers={"Retry-After": "1"},
        body={"message": "You have exceeded a secondary rate limit."},
    )
    job = push(stack, repo.full_name)
    assert job.get_status() == JobStatus.FINISHED, failure_text(job)
    assert job.return_value()["status"] == "processed"  # not rescheduled: waited in place
    assert len(mints_for(stack, repo.id)) == 1
    posts = requests_since(stack, mark, "POST", TOKEN_PATH)
    assert [r.status for r in posts] == [429, 201, 201]  # the check run's token, the fetch's


def test_long_rate_limit_reschedules_the_push_without_holding_a_worker(
    stack: Stack, fresh_repo_name: str
):
    repo = stack.repository(fresh_repo_name)
    registry = ScheduledJobRegistry(queue=Queue(QUEUE, connection=stack.redis))
    reset = int(time.time()) + 120
    stack.simulator.inject_failure(
        "POST",
        TOKEN_PATH,
        403,
        times=1,
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
        body={"message": "API rate limit exceeded for installation ID 7."},
    )
    started = time.monotonic()
    job = push(stack, repo.full_name)
    took = time.monotonic() - started
    again_id = None
    try:
        assert job.get_status() == JobStatus.FINISHED, failure_text(job)
        result = job.return_value()
        assert result["status"] == "rescheduled", result
        again_id = result["job_id"]
        assert again_id != job.id
        assert again_id in registry.get_job_ids()
        at = registry.get_scheduled_time(again_id).timestamp()
        now = time.time()
        assert now + 100 <= at <= now + 140, at - now
        again = Job.fetch(again_id, connection=stack.redis)
        assert again.kwargs == job.kwargs
        assert took < 30, f"the job held its worker {took:.0f} s"
        assert mints_for(stack, repo.id) == []
    finally:
        if again_id is not None:
            registry.remove(again_id)
            Job.fetch(again_id, connection=stack.redis).delete()


# Permanent refusals ---------------------------------------------------------------------------


def test_unknown_installation_fails_at_once(stack: Stack, fresh_repo_name: str):
    repo = stack.repository(fresh_repo_name)
    job = push(stack, repo.full_name, installation_id=999999)
    text = assert_failed_at_once(job, stack)
    assert "404" in text, text
    assert "uninstalled" in text, text
    assert mints_for(stack, repo.id) == []


def test_token_scope_refused_fails_at_once(stack: Stack, fresh_repo_name: str):
    repo = stack.repository(fresh_repo_name)
    # Refused for the check run's token and the commit status's (the report falls back to
    # nothing), then for the fetch's.
    stack.simulator.inject_failure(
        "POST",
        TOKEN_PATH,
        422,
        times=3,
        body={"message": "The permissions requested are not granted to this installation."},
    )
    try:
        job = push(stack, repo.full_name)
        text = assert_failed_at_once(job, stack)
        assert "422" in text, text
        assert "Contents: read" in text, text
        assert mints_for(stack, repo.id) == []
        assert stack.simulator.check_runs(repo.full_name) == []
    finally:
        stack.redis.delete(report_fallback(INSTALLATION_ID))


def test_suspended_installation_fails_at_once(stack: Stack):
    installation_id = 700000 + uuid.uuid4().int % 100000
    account = f"suspended-{uuid.uuid4().hex[:8]}"
    stack.simulator.add_installation(installation_id, account=account)
    repo = stack.simulator.create_repository(
        f"{account}/app", installation_id=installation_id, files={"README.md": "hi\n"}
    )
    stack.simulator.suspend_installation(installation_id)
    job = push(stack, repo.full_name)
    text = assert_failed_at_once(job, stack)
    assert "403" in text, text
    assert "suspended" in text, text
    assert mints_for(stack, repo.id) == []


# git refusing the token -----------------------------------------------------------------------


def test_fresh_token_git_does_not_know_yet_is_tried_again(stack: Stack, fresh_repo_name: str):
    repo = stack.repository(fresh_repo_name)
    git_path = f"/{repo.full_name}.git"
    mark = len(stack.simulator.requests)
    # git asks first without a credential (a 401 fetches it from the credential helper), then
    # with it: the second refusal is the fresh token's.
    stack.simulator.inject_failure("*", git_path, 401, times=2, headers=GIT_401)
    job = push(stack, repo.full_name)
    assert job.get_status() == JobStatus.FINISHED, failure_text(job)
    (mint,) = mints_for(stack, repo.id)
    fetches = requests_since(stack, mark, "*", git_path)
    with_token = [r for r in fetches if basic_token(r)]
    assert with_token[0].status == 401
    assert fetches[-1].status == 200
    assert {basic_token(r) for r in with_token} == {mint.token}


def test_stale_cached_token_is_dropped_and_a_fresh_one_minted_once(
    stack: Stack, fresh_repo_name: str
):
    repo = stack.repository(fresh_repo_name)
    git_path = f"/{repo.full_name}.git"
    first = push(stack, repo.full_name)
    assert first.get_status() == JobStatus.FINISHED, failure_text(first)
    (cached,) = mints_for(stack, repo.id)

    stack.simulator.commit(repo.full_name, files={"second": "2\n"}, message="second")
    mark = len(stack.simulator.requests)
    # GitHub no longer accepts the cached token: git's first request, without a credential, and
    # its second, with the cached token, are refused.
    stack.simulator.inject_failure("*", git_path, 401, times=2, headers=GIT_401)
    second = push(stack, repo.full_name)
    assert second.get_status() == JobStatus.FINISHED, failure_text(second)
    mints = mints_for(stack, repo.id)
    assert len(mints) == 2, f"{len(mints)} mint(s): the refused cached token was used again"
    fresh = mints[1]
    fetches = requests_since(stack, mark, "*", git_path)
    assert [r.status for r in fetches if basic_token(r) == cached.token] == [401]
    with_fresh = [r.status for r in fetches if basic_token(r) == fresh.token]
    assert with_fresh, with_fresh
    assert with_fresh[-1] == 200, with_fresh


def test_git_5xx_is_retried_with_backoff(stack: Stack, fresh_repo_name: str):
    repo = stack.repository(fresh_repo_name)
    upload_pack = f"/{repo.full_name}.git/git-upload-pack"
    mark = len(stack.simulator.requests)
    stack.simulator.inject_failure("POST", upload_pack, 502, times=2)
    job = push(stack, repo.full_name)
    assert job.get_status() == JobStatus.FINISHED, failure_text(job)
    assert job.return_value()["status"] == "processed"
    assert len(mints_for(stack, repo.id)) == 1
    statuses = [r.status for r in requests_since(stack, mark, "POST", upload_pack)]
    assert statuses.count(502) == 2, statuses
    assert statuses[-1] == 200, statuses


# Clock skew -----------------------------------------------------------------------------------


def test_clock_skew_is_learnt_once_and_reused(stack: Stack, fresh_repo_name: str):
    first_repo = stack.repository(fresh_repo_name)
    second_repo = stack.repository(fresh_repo_name + "-b")
    stack.redis.delete(CLOCK_OFFSET_KEY)
    stack.simulator.clock_offset = 3600  # GitHub's clock an hour ahead: our JWT looks expired
    try:
        mark = len(stack.simulator.requests)
        first = push(stack, first_repo.full_name)
        assert first.get_status() == JobStatus.FINISHED, failure_text(first)
        assert len(mints_for(stack, first_repo.id)) == 1
        # Learnt at the first token (the check run's), then the fetch's is minted at once.
        posts = requests_since(stack, mark, "POST", TOKEN_PATH)
        assert [r.status for r in posts] == [401, 201, 201]
        stored = stack.redis.get(CLOCK_OFFSET_KEY)
        assert stored is not None
        assert abs(float(stored) - 3600) <= 120, stored

        mark = len(stack.simulator.requests)
        second = push(stack, second_repo.full_name)
        assert second.get_status() == JobStatus.FINISHED, failure_text(second)
        assert len(mints_for(stack, second_repo.id)) == 1
        # The offset learnt by the first job was used at once: no refused JWT this time.
        assert [r.status for r in requests_since(stack, mark, "POST", TOKEN_PATH)] == [201, 201]
    finally:
        stack.simulator.clock_offset = 0
        stack.redis.delete(CLOCK_OFFSET_KEY)


# GitHub unreachable ---------------------------------------------------------------------------


def _ended_or_retrying(stack: Stack, job_id: str) -> Any:
    job = Job.fetch(job_id, connection=stack.redis)
    ended = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.SCHEDULED)
    return job if job.get_status() in ended else None


@pytest.mark.stack(
    overrides={"GITHUB_API_URL": f"http://127.0.0.1:{free_port()}/api/v3"}, workers=1
)
def test_unreachable_api_is_a_transient_failure_without_secrets(
    own_stack: Stack, fresh_repo_name: str
):
    repo = own_stack.repository(fresh_repo_name)
    job_id = enqueue_push(own_stack, repo.full_name)
    job = wait_for(
        lambda: _ended_or_retrying(own_stack, job_id),
        JOB_TIMEOUT + 30,
        f"job {job_id} to fail or be scheduled for retry",
    )
    assert job.get_status() in (JobStatus.FAILED, JobStatus.SCHEDULED), job.get_status()
    assert job.retries_left is not None, job.retries_left
    assert job.retries_left > 0, job.retries_left
    # A retried job keeps no result: what the failure said is in the worker's log.
    text = failure_text(job) or own_stack.logs()
    assert "GitHub API at" in text, text[-2000:]
    assert "unreachable" in text, text[-2000:]
    assert "GITHUB_API_URL" in text
    assert "eyJ" not in text
    assert "eyJ" not in own_stack.logs()
    assert mints_for(own_stack, repo.id) == []
