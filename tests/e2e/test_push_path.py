"""A push through the real processes: token minted and cached, exact commit checked out."""

from __future__ import annotations

import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from rq.job import Job

from tests.conftest import APP_ID, INSTALLATION_ID
from tests.e2e.conftest import JOB_TIMEOUT, Stack
from tests.support import command_lines, failure_text, wait_for, wait_job


def send_push(stack: Stack, repo_name: str, sha: str, before: str | None = None) -> tuple[str, Job]:
    payload = stack.simulator.push_payload(repo_name, before=before, after=sha)
    delivery = str(uuid.uuid4())
    answer = stack.post(payload, delivery=delivery)
    assert answer.status_code == 202, answer.text
    return delivery, wait_job(stack.redis, answer.json()["job_id"], timeout=JOB_TIMEOUT + 30)


def mints_for(stack: Stack, repository_id: int) -> list:
    """The fetch's tokens minted for exactly this repository (reports mint their own)."""
    return [
        m
        for m in stack.simulator.issued_tokens
        if m.repository_ids == (repository_id,) and "contents" in m.permissions
    ]


def test_token_is_minted_with_a_valid_jwt_and_the_narrowest_scope(stack: Stack, fresh_repo_name):
    repo = stack.repository(fresh_repo_name)
    sha = stack.simulator.commit(repo.full_name, files={"x": "1"}, message="x")
    started = time.time()
    _, job = send_push(stack, repo.full_name, sha)
    assert job.get_status() == "finished", failure_text(job)
    (mint,) = mints_for(stack, repo.id)
    assert mint.installation_id == INSTALLATION_ID
    # GitHub adds metadata:read to every token; nothing more than contents:read was asked for.
    assert mint.permissions == {"contents": "read", "metadata": "read"}
    # The check run has a token of its own, that may only write checks.
    scopes = [
        m.permissions for m in stack.simulator.issued_tokens if m.repository_ids == (repo.id,)
    ]
    assert sorted(scopes, key=str) == [
        {"checks": "write", "metadata": "read"},
        {"contents": "read", "metadata": "read"},
    ]
    claims = mint.jwt_claims
    assert claims["iss"] == APP_ID
    assert isinstance(claims["iss"], str)
    assert claims["exp"] - claims["iat"] <= 600
    assert started - 70 <= claims["iat"] <= started - 50  # backdated 60 s against clock drift


def test_a_burst_of_pushes_to_one_repository_mints_one_token(stack: Stack, fresh_repo_name):
    repo = stack.repository(fresh_repo_name)
    shas = [
        stack.simulator.commit(repo.full_name, files={"n": str(n)}, message=f"c{n}")
        for n in range(10)
    ]
    payloads = [stack.simulator.push_payload(repo.full_name, before=None, after=s) for s in shas]
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(stack.post, payloads))
    assert [a.status_code for a in answers] == [202] * 10
    jobs = [wait_job(stack.redis, a.json()["job_id"], timeout=60) for a in answers]
    assert [j.get_status() for j in jobs] == ["finished"] * 10, [failure_text(j) for j in jobs]
    assert len(mints_for(stack, repo.id)) == 1


def test_the_pushed_commit_is_processed_even_after_the_branch_moved_on(
    stack: Stack, fresh_repo_name
):
    repo = stack.repository(fresh_repo_name)
    pushed = stack.simulator.commit(repo.full_name, files={"version.txt": "pushed\n"}, message="a")
    later = stack.simulator.commit(repo.full_name, files={"later.txt": "later\n"}, message="b")
    assert stack.simulator.branch_tip(repo.full_name, "main") == later
    delivery, job = send_push(stack, repo.full_name, pushed)
    assert job.get_status() == "finished", failure_text(job)
    (seen,) = stack.record(delivery)
    assert seen["head"] == pushed == seen["sha"] == seen["after_in_payload"]
    assert "version.txt" in seen["files"]
    assert "later.txt" not in seen["files"]
    assert seen["repository"] == repo.full_name
    assert seen["ref"] == "refs/heads/main"
    assert seen["mode"] == "0o700"
    # The checkout directory is gone once the job has ended.
    assert not os.path.exists(seen["path"])
    result = job.return_value()
    assert result["sha"] == pushed
    assert result["summary"] == {
        "sha": pushed,
        "files": 2,
        "bytes": len("hello\n") + len("pushed\n"),
    }
    assert result["processor"] == {"head": pushed}
    # One delivery can be followed through the worker's logs by its id.
    worker_lines = [
        line for w in stack.workers for line in w.output().splitlines() if delivery in line
    ]
    assert any("checking out" in line for line in worker_lines)
    assert any("processed" in line for line in worker_lines)


def test_command_sees_the_push_and_no_secret_and_the_token_is_nowhere(
    stack: Stack, fresh_repo_name
):
    script = (
        'echo "repo=$GHAPP_REPOSITORY ref=$GHAPP_REF sha=$GHAPP_SHA delivery=$GHAPP_DELIVERY"\n'
        'echo "event_after=$(python3 -c "import json,os;'
        "print(json.load(open(os.environ['GHAPP_EVENT_PATH']))['after'])\")\"\n"
        "echo '--- env'\nenv\necho '--- git config'\ncat .git/config\n"
        "echo '--- shallow'\ncat .git/shallow .git/HEAD\n"
    )
    repo = stack.repository(fresh_repo_name, files={"ghapp-test.sh": script})
    sha = stack.simulator.branch_tip(repo.full_name, "main")
    delivery, job = send_push(stack, repo.full_name, sha)
    assert job.get_status() == "finished", failure_text(job)
    output = job.return_value()["command"]["output"]
    assert f"repo={repo.full_name} ref=refs/heads/main sha={sha} delivery={delivery}" in output
    assert f"event_after={sha}" in output
    for secret_name in ("GITHUB_PRIVATE_KEY", "GITHUB_WEBHOOK_SECRET", "GIT_CONFIG", "REDIS_URL"):
        assert secret_name not in output
    assert "extraheader" not in output.lower()
    assert "authorization" not in output.lower()
    (mint,) = mints_for(stack, repo.id)
    token = mint.token
    assert token not in output
    assert token not in stack.logs()
    for key in stack.redis.keys("*"):
        kind = stack.redis.type(key)
        if kind == b"string":
            assert token.encode() not in stack.redis.get(key), key
        elif kind == b"hash":
            assert all(token.encode() not in v for v in stack.redis.hvals(key)), key
    # The token reached git as a header, never in a URL.
    fetches = [r for r in stack.simulator.requests if r.path.startswith(f"/{repo.full_name}.git")]
    assert fetches
    assert all(token not in r.path + r.query for r in fetches)


def test_failing_command_fails_the_job_with_its_status_and_output(stack: Stack, fresh_repo_name):
    repo = stack.repository(fresh_repo_name, files={"ghapp-test.sh": "echo broken build\nexit 3\n"})
    _, job = send_push(stack, repo.full_name, stack.simulator.branch_tip(repo.full_name, "main"))
    assert job.get_status() == "failed"
    text = failure_text(job)
    assert "exited with status 3" in text
    assert "broken build" in text


def test_a_job_past_job_timeout_is_stopped_and_failed(stack: Stack, fresh_repo_name):
    marker = f"ghapp-test-sleeper-{uuid.uuid4().hex}"  # its command line, to find it in /proc
    repo = stack.repository(
        fresh_repo_name,
        files={"ghapp-test.sh": f"sh -c 'sleep 300; : {marker}' &\nwait\n"},
    )
    _, job = send_push(stack, repo.full_name, stack.simulator.branch_tip(repo.full_name, "main"))
    assert job.get_status() == "failed"
    assert "JOB_TIMEOUT" in failure_text(job)

    def sleepers() -> list[int]:
        return [pid for pid, line in command_lines().items() if marker.encode() in line]

    wait_for(lambda: not sleepers(), 5, "the command's background process to be gone")


def test_payload_reaches_the_processor_and_is_not_kept_after_success(stack: Stack, fresh_repo_name):
    repo = stack.repository(fresh_repo_name)
    sha = stack.simulator.branch_tip(repo.full_name, "main")
    delivery, job = send_push(stack, repo.full_name, sha)
    assert job.get_status() == "finished"
    (seen,) = stack.record(delivery)
    assert seen["after_in_payload"] == sha
    assert not stack.redis.exists(job.kwargs["payload_key"])
    # The job carries identifiers only: no payload, no token.
    assert set(job.kwargs) == {
        "delivery",
        "installation_id",
        "repository_id",
        "repository",
        "clone_url",
        "ref",
        "before",
        "sha",
        "pushed_at",
        "payload_key",
        "event",
    }
    assert len(json.dumps(job.kwargs)) < 1000


def test_a_job_failed_for_good_drops_its_payload(stack: Stack, fresh_repo_name):
    repo = stack.repository(fresh_repo_name, files={"ghapp-test.sh": "echo broken; exit 3\n"})
    _, job = send_push(stack, repo.full_name, stack.simulator.branch_tip(repo.full_name))
    assert job.get_status() == "failed"
    assert job.retries_left == 0
    assert "status 3" in failure_text(job)
    assert not stack.redis.exists(job.kwargs["payload_key"])
