"""Results where people look: a check run on each processed commit, through the real processes
and the simulator's Checks API; re-runs from GitHub's buttons; the commit status fallback."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests
from rq import Queue
from rq.job import Job, JobStatus

from ghapp.core.redis_keys import report_fallback
from tests.conftest import APP_ID, INSTALLATION_ID
from tests.e2e.conftest import JOB_TIMEOUT, Stack
from tests.support import failure_text, wait_job

DEFAULT_PERMISSIONS = {
    "contents": "read",
    "checks": "write",
    "statuses": "write",
    "metadata": "read",
}


def push(stack: Stack, repo: str, sha: str | None = None) -> tuple[str, Job]:
    sha = sha or stack.simulator.branch_tip(repo)
    payload = stack.simulator.push_payload(repo, before=None, after=sha)
    delivery = str(uuid.uuid4())
    answer = stack.post(payload, delivery=delivery)
    assert answer.status_code == 202, answer.text
    return delivery, wait_job(stack.redis, answer.json()["job_id"], timeout=JOB_TIMEOUT + 40)


def only_check_run(stack: Stack, repo: str) -> dict[str, Any]:
    (check_run,) = stack.simulator.check_runs(repo)
    return check_run


def result_script(result: dict[str, Any] | str, exit_status: int = 0) -> str:
    """A processing step that writes ``result`` to GHAPP_RESULT_PATH and exits."""
    text = result if isinstance(result, str) else json.dumps(result)
    return (
        f"cat > \"$GHAPP_RESULT_PATH\" <<'EOF'\n{text}\nEOF\necho step output\nexit {exit_status}\n"
    )


def test_a_processed_push_gets_a_successful_check_run_linking_to_its_job(
    stack: Stack, fresh_repo_name: str
):
    repo = stack.repository(fresh_repo_name, files={"ghapp-test.sh": "echo all fine; exit 0\n"})
    delivery, job = push(stack, repo.full_name)
    assert job.get_status() == JobStatus.FINISHED, failure_text(job)
    check_run = only_check_run(stack, repo.full_name)
    sha = stack.simulator.branch_tip(repo.full_name)
    assert check_run["name"] == "ghapp"
    assert check_run["head_sha"] == sha
    assert check_run["external_id"] == delivery
    assert (check_run["status"], check_run["conclusion"]) == ("completed", "success")
    output = check_run["output"]
    assert output["title"].startswith("if [ -f ghapp-test.sh ]")
    assert " passed in " in output["title"]
    assert f"`{sha}`" in output["summary"]
    assert "| fetch |" in output["summary"]
    assert "all fine" in output["text"]
    assert output["text"].startswith("```")
    # The job's page, where "Details" leads, answers the job's result.
    assert check_run["details_url"] == f"{stack.url}/jobs/{job.id}"
    page = requests.get(check_run["details_url"], timeout=10)
    assert page.status_code == 200
    shown = page.json()
    assert shown["status"] == "finished"
    assert shown["result"]["status"] == "processed"
    assert shown["result"]["report"]["check_run_id"] == check_run["id"]
    assert "payload_key" not in page.text
    assert job.return_value()["report"]["url"] == check_run["html_url"]


def test_an_unknown_job_page_is_404(stack: Stack):
    for job_id in (uuid.uuid4().hex, str(uuid.uuid4()), "not-a-job", "..%2Fhealthz"):
        assert requests.get(f"{stack.url}/jobs/{job_id}", timeout=10).status_code == 404
    # A job that is not a push's (one queue no worker serves) is nobody's page either.
    other = Queue("not-ghapps", connection=stack.redis).enqueue("os.getcwd")
    try:
        assert requests.get(f"{stack.url}/jobs/{other.id}", timeout=10).status_code == 404
    finally:
        other.delete()


def test_a_failing_step_fails_its_check_run_with_its_exit_status_and_output(
    stack: Stack, fresh_repo_name: str
):
    script = "echo 'src/a.py:3: undefined name' >&2; exit 2\n"
    repo = stack.repository(fresh_repo_name, files={"ghapp-test.sh": script})
    _, job = push(stack, repo.full_name)
    assert job.get_status() == JobStatus.FAILED
    check_run = only_check_run(stack, repo.full_name)
    assert check_run["conclusion"] == "failure"
    assert check_run["output"]["title"].endswith("failed: exit 2")
    assert "Exit status: **2**" in check_run["output"]["summary"]
    assert "undefined name" in check_run["output"]["text"]
    assert job.meta["report"]["conclusion"] == "failure"
    # The job page gives the one-line error, never a traceback.
    shown = requests.get(f"{stack.url}/jobs/{job.id}", timeout=10).json()
    assert shown["status"] == "failed"
    assert "exited with status 2" in shown["error"]
    assert "Traceback" not in json.dumps(shown)


def test_a_step_past_job_timeout_times_out_its_check_run(stack: Stack, fresh_repo_name: str):
    script = f"echo started; sleep {JOB_TIMEOUT + 20}\n"
    repo = stack.repository(fresh_repo_name, files={"ghapp-test.sh": script})
    _, job = push(stack, repo.full_name)
    assert job.get_status() == JobStatus.FAILED
    check_run = only_check_run(stack, repo.full_name)
    assert check_run["conclusion"] == "timed_out"
    assert f"timed out after {JOB_TIMEOUT} s" in check_run["output"]["title"]
    assert "started" in check_run["output"]["text"]


def test_the_result_file_decides_and_its_annotations_go_fifty_a_request(
    stack: Stack, fresh_repo_name: str
):
    annotations = [
        {
            "path": "src/app.py",
            "start_line": n,
            "end_line": n,
            "annotation_level": "warning",
            "message": f"warning {n}",
        }
        for n in range(1, 121)
    ]
    annotations.append({**annotations[0], "path": "../../etc/passwd"})
    annotations.append({**annotations[0], "start_line": 500, "end_line": 501})
    result = {
        "conclusion": "neutral",
        "title": "120 warnings",
        "summary": "## Lint\nwarnings only",
        "annotations": annotations,
    }
    repo = stack.repository(
        fresh_repo_name,
        files={"ghapp-test.sh": result_script(result), "src/app.py": "x = 1\n" * 200},
    )
    _, job = push(stack, repo.full_name)
    assert job.get_status() == JobStatus.FINISHED, failure_text(job)
    check_run = only_check_run(stack, repo.full_name)
    assert check_run["conclusion"] == "neutral"
    assert check_run["output"]["title"] == "120 warnings"
    summary = check_run["output"]["summary"]
    assert summary.startswith("## Lint\nwarnings only")
    assert "1 annotation(s) dropped: no such file" in summary
    assert "1 annotation(s) dropped: past the end" in summary
    stored = stack.simulator.check_run_annotations(repo.full_name, check_run["id"])
    assert [a["message"] for a in stored] == [f"warning {n}" for n in range(1, 121)]
    assert check_run["output"]["annotations_count"] == 120
    # Annotations 50, 50, then 20 a request; then the completion (safe to repeat: none in it).
    patches = [
        r
        for r in stack.simulator.requests
        if r.method == "PATCH" and r.path.endswith(f"/check-runs/{check_run['id']}")
    ]
    assert [r.status for r in patches] == [200, 200, 200, 200]


def test_a_failing_linter_keeps_its_annotations(stack: Stack, fresh_repo_name: str):
    result = {
        "title": "1 error",
        "annotations": [
            {
                "path": "a.py",
                "start_line": 1,
                "end_line": 1,
                "annotation_level": "failure",
                "message": "syntax error",
            }
        ],
    }
    repo = stack.repository(
        fresh_repo_name, files={"ghapp-test.sh": result_script(result, 1), "a.py": "(\n"}
    )
    _, job = push(stack, repo.full_name)
    assert job.get_status() == JobStatus.FAILED
    check_run = only_check_run(stack, repo.full_name)
    assert (check_run["conclusion"], check_run["output"]["title"]) == ("failure", "1 error")
    (annotation,) = stack.simulator.check_run_annotations(repo.full_name, check_run["id"])
    assert annotation["message"] == "syntax error"


def test_a_malformed_result_file_is_a_note_and_the_exit_status_decides(
    stack: Stack, fresh_repo_name: str
):
    repo = stack.repository(
        fresh_repo_name, files={"ghapp-test.sh": result_script('{\n"conclusion": failure\n}')}
    )
    _, job = push(stack, repo.full_name)
    assert job.get_status() == JobStatus.FINISHED, failure_text(job)
    check_run = only_check_run(stack, repo.full_name)
    assert check_run["conclusion"] == "success"
    assert "GHAPP_RESULT_PATH is not valid JSON (line 2" in check_run["output"]["summary"]


# Re-runs from GitHub's buttons ------------------------------------------------------------------


def rerun(stack: Stack, event: str, payload: dict[str, Any]) -> requests.Response:
    return stack.post(payload, event=event)


@pytest.mark.parametrize("event", ["check_run", "check_suite"])
def test_re_run_processes_that_commit_again_with_a_new_check_run_even_after_the_branch_moved(
    stack: Stack, fresh_repo_name: str, event: str
):
    repo = stack.repository(fresh_repo_name)
    first = stack.simulator.branch_tip(repo.full_name)
    push(stack, repo.full_name, first)
    (original,) = stack.simulator.check_runs(repo.full_name, first)
    later = stack.simulator.commit(repo.full_name, files={"later.txt": "x"}, message="later")
    push(stack, repo.full_name, later)
    if event == "check_run":
        payload = stack.simulator.check_run_payload(repo.full_name, original["id"])
    else:
        payload = stack.simulator.check_suite_payload(repo.full_name, first, branch="main")
    answer = rerun(stack, event, payload)
    assert answer.status_code == 202, answer.text
    job = wait_job(stack.redis, answer.json()["job_id"], timeout=JOB_TIMEOUT + 40)
    assert job.get_status() == JobStatus.FINISHED, failure_text(job)
    result = job.return_value()
    assert (result["status"], result["sha"], result["ref"]) == (
        "processed",
        first,
        "refs/heads/main",
    )
    runs = stack.simulator.check_runs(repo.full_name, first)
    assert len(runs) == 2
    assert runs[1]["id"] != original["id"]
    assert runs[1]["conclusion"] == "success"
    assert runs[1]["external_id"] == answer.json()["delivery"]
    (seen,) = stack.record(answer.json()["delivery"])
    assert seen["head"] == first
    # The branch's newest push is still the later one: a push of it now is no duplicate of
    # the re-run, and the re-run superseded nothing.
    assert stack.simulator.check_runs(repo.full_name, later)[0]["conclusion"] == "success"


def test_a_check_suite_requested_with_a_push_is_not_processed_twice(
    stack: Stack, fresh_repo_name: str
):
    repo = stack.repository(fresh_repo_name)
    sha = stack.simulator.branch_tip(repo.full_name)
    payload = stack.simulator.check_suite_payload(repo.full_name, sha, action="requested")
    answer = rerun(stack, "check_suite", payload)
    assert answer.status_code == 200
    assert answer.json()["status"] == "ignored"


def test_a_re_run_of_another_apps_check_run_is_ignored(stack: Stack, fresh_repo_name: str):
    repo = stack.repository(fresh_repo_name)
    push(stack, repo.full_name)
    check_run = only_check_run(stack, repo.full_name)
    payload = stack.simulator.check_run_payload(repo.full_name, check_run["id"], app_id=1)
    answer = rerun(stack, "check_run", payload)
    assert answer.status_code == 200
    assert "another App" in answer.json()["reason"]
    assert APP_ID != "1"


def test_a_redelivered_re_run_is_a_duplicate(stack: Stack, fresh_repo_name: str):
    repo = stack.repository(fresh_repo_name)
    push(stack, repo.full_name)
    check_run = only_check_run(stack, repo.full_name)
    payload = stack.simulator.check_run_payload(repo.full_name, check_run["id"])
    delivery = str(uuid.uuid4())
    assert stack.post(payload, event="check_run", delivery=delivery).status_code == 202
    again = stack.post(payload, event="check_run", delivery=delivery)
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")


# Permissions and outages -----------------------------------------------------------------------


def test_without_the_checks_permission_a_commit_status_is_set_instead(
    stack: Stack, fresh_repo_name: str
):
    repo = stack.repository(fresh_repo_name, files={"ghapp-test.sh": "exit 3\n"})
    stack.simulator.app_permissions = {"contents": "read", "statuses": "write"}
    logged = stack.log_mark()
    try:
        _, job = push(stack, repo.full_name)
        first = stack.simulator.branch_tip(repo.full_name)
        second = stack.simulator.commit(repo.full_name, files={"n": "2"}, message="second")
        _, again = push(stack, repo.full_name, second)
    finally:
        stack.simulator.app_permissions = DEFAULT_PERMISSIONS
        stack.redis.delete(report_fallback(INSTALLATION_ID))
    assert job.get_status() == again.get_status() == JobStatus.FAILED
    assert stack.simulator.check_runs(repo.full_name) == []
    for sha in (first, second):
        statuses = stack.simulator.statuses(repo.full_name, sha)
        assert [(s["state"], s["context"]) for s in statuses] == [
            ("pending", "ghapp"),
            ("failure", "ghapp"),
        ]
        assert statuses[1]["description"].endswith("failed: exit 3")
    assert stack.simulator.statuses(repo.full_name, first)[1]["target_url"] == (
        f"{stack.url}/jobs/{job.id}"
    )
    # Said once, with the permission to add.
    lines = stack.logs_since(logged).splitlines()
    warnings = [line for line in lines if "'Checks: Read and write'" in line]
    assert len(warnings) == 1, warnings
    # The status's token could only write statuses.
    scopes = [
        m.permissions for m in stack.simulator.issued_tokens if m.repository_ids == (repo.id,)
    ]
    assert {"statuses": "write", "metadata": "read"} in scopes
    assert not any("checks" in scope for scope in scopes)


def test_a_checks_outage_loses_no_processing(stack: Stack, fresh_repo_name: str):
    repo = stack.repository(fresh_repo_name)
    # Every call of this repository's check runs fails (the simulator answers 502, for good).
    check_runs = f"/api/v3/repos/{repo.full_name}/check-runs"
    stack.simulator.inject_failure("*", check_runs, 502, times=1000)
    delivery, job = push(stack, repo.full_name)
    assert job.get_status() == JobStatus.FINISHED, failure_text(job)
    result = job.return_value()
    assert result["status"] == "processed"
    assert "could not report on GitHub" in result["report"]["error"]
    assert "502" in result["report"]["error"]
    assert stack.record(delivery)  # the step ran


@pytest.mark.parametrize(
    ("report", "expected"),
    [("statuses", [("pending", "lint"), ("success", "lint")]), ("none", [])],
)
def test_report_setting_chooses_statuses_or_nothing(
    report: str, expected: list, request: pytest.FixtureRequest, fresh_repo_name: str
):
    request.applymarker(
        pytest.mark.stack(overrides={"REPORT": report, "CHECK_NAME": "lint"}, workers=1)
    )
    own_stack = request.getfixturevalue("own_stack")
    repo = own_stack.repository(fresh_repo_name)
    _, job = push(own_stack, repo.full_name)
    assert job.get_status() == JobStatus.FINISHED, failure_text(job)
    sha = own_stack.simulator.branch_tip(repo.full_name)
    assert own_stack.simulator.check_runs(repo.full_name) == []
    statuses = own_stack.simulator.statuses(repo.full_name, sha)
    assert [(s["state"], s["context"]) for s in statuses] == expected
    scopes = [
        m.permissions for m in own_stack.simulator.issued_tokens if m.repository_ids == (repo.id,)
    ]
    assert len(scopes) == (2 if expected else 1)  # the fetch's token, and the status's if any
