"""Reporting a job on GitHub against the simulator's Checks and statuses APIs: one check run per
job whatever fails, GitHub's refusals and limits, and the fallback when a permission is missing."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest
import redis

from ghapp.core import redis_keys
from ghapp.core.push_job import PushJob
from ghapp.simulator import GitHubSimulator
from tests.conftest import APP_ID
from worker.check_output import Facts, verdict
from worker.github_api import GitHubAPI, session
from worker.reporting import Reporter
from worker.step_report import Annotation, StepReport
from worker.tokens import TokenSource, cache_cipher

ALL_PERMISSIONS = {"contents": "read", "checks": "write", "statuses": "write", "metadata": "read"}


@pytest.fixture
def installation(simulator: GitHubSimulator) -> Iterator[int]:
    """An installation of this test's own (a permission fallback is kept per installation)."""
    installation_id = 800_000 + uuid.uuid4().int % 100_000
    simulator.add_installation(installation_id, account=f"acct-{installation_id}")
    yield installation_id
    simulator.app_permissions = ALL_PERMISSIONS


def reporter_for(
    simulator: GitHubSimulator,
    connection: redis.Redis,
    app_key: tuple[bytes, bytes],
    repo: str,
    installation_id: int,
    mode: str = "checks",
) -> Reporter:
    repository = simulator.repository(repo)
    sha = simulator.branch_tip(repo)
    push = PushJob(
        delivery=str(uuid.uuid4()),
        installation_id=installation_id,
        repository_id=repository.id,
        repository=repo,
        clone_url=repository.clone_url,
        ref="refs/heads/main",
        before="0" * 40,
        sha=sha,
    )
    api = GitHubAPI(simulator.api_url, session(2, frozenset({"GET"})))
    tokens = TokenSource(
        connection=connection,
        api=api,
        app_id=APP_ID,
        private_key=app_key[0],
        cipher=cache_cipher(app_key[0]),
    )
    return Reporter(
        push=push,
        mode=mode,
        check_name="ghapp",
        connection=connection,
        api=api,
        tokens=tokens,
        details_url="https://ghapp.example.com/jobs/1",
        sleep=lambda seconds: None,
    )


def facts(reporter: Reporter, state: str = "passed", output: str = "ok\n") -> Facts:
    return Facts(
        state=state,
        step="make check",
        sha=reporter.push.sha,
        ref=reporter.push.ref,
        delivery=reporter.push.delivery,
        seconds={"fetch": 0.5, "processing": 1.0},
        exit_status=0,
        output=output,
    )


@pytest.fixture
def make(simulator, redis_client, app_key, installation, fresh_repo_name):
    def build(mode: str = "checks", files: dict[str, str] | None = None) -> Reporter:
        simulator.create_repository(
            fresh_repo_name, installation, files=files or {"a.py": "x = 1\n" * 100}
        )
        return reporter_for(simulator, redis_client, app_key, fresh_repo_name, installation, mode)

    return build


def test_a_job_started_twice_has_one_check_run_and_is_never_reopened(make, simulator) -> None:
    reporter = make()
    reporter.started()
    reporter.started()  # a retry after the worker died
    (running,) = simulator.check_runs(reporter.push.repository)
    assert running["status"] == "in_progress"
    assert running["details_url"] == "https://ghapp.example.com/jobs/1"
    done = reporter.finished(verdict(facts(reporter)))
    assert done["check_run_id"] == running["id"]
    reporter.started()  # a late writer
    (check_run,) = simulator.check_runs(reporter.push.repository)
    assert (check_run["status"], check_run["conclusion"]) == ("completed", "success")


def test_output_past_githubs_bytes_is_cut_so_the_check_run_completes(make, simulator) -> None:
    reporter = make()
    reporter.started()
    output = "✓" * 22_000 + "\n"  # 22,001 characters: 66,001 bytes
    done = reporter.finished(verdict(facts(reporter, output=output)))
    assert "error" not in done, done
    (check_run,) = simulator.check_runs(reporter.push.repository)
    assert check_run["conclusion"] == "success"
    assert len(check_run["output"]["text"].encode()) <= 65_535


def test_a_create_answered_5xx_is_tried_again_and_makes_one_check_run(make, simulator) -> None:
    reporter = make()
    simulator.inject_failure("POST", f"/api/v3/repos/{reporter.push.repository}/check-runs", 502)
    reporter.started()
    assert len(simulator.check_runs(reporter.push.repository)) == 1


def test_a_completion_github_refuses_is_completed_smaller(make, simulator) -> None:
    reporter = make()
    reporter.started()
    (running,) = simulator.check_runs(reporter.push.repository)
    path = f"/api/v3/repos/{reporter.push.repository}/check-runs/{running['id']}"
    simulator.inject_failure("PATCH", path, 422, body={"message": "Validation Failed"})
    done = reporter.finished(verdict(facts(reporter)))
    assert "GitHub refused the full report" in done["error"]
    (check_run,) = simulator.check_runs(reporter.push.repository)
    assert (check_run["status"], check_run["conclusion"]) == ("completed", "success")
    assert "Validation Failed" in check_run["output"]["summary"]


def test_annotations_go_fifty_a_request_and_a_failed_batch_still_completes(make, simulator) -> None:
    reporter = make()
    reporter.started()
    annotations = tuple(Annotation("a.py", n, n, "warning", f"w{n}") for n in range(1, 76))
    result = verdict(facts(reporter), StepReport(annotations=annotations), line_count=lambda p: 100)
    done = reporter.finished(result)
    assert "error" not in done
    (check_run,) = simulator.check_runs(reporter.push.repository)
    stored = simulator.check_run_annotations(reporter.push.repository, check_run["id"])
    assert [a["message"] for a in stored] == [f"w{n}" for n in range(1, 76)]
    assert check_run["status"] == "completed"


def test_a_repository_the_token_cannot_reach_is_no_missing_permission(
    make, simulator, redis_client, caplog
) -> None:
    reporter = make()
    simulator.inject_failure(
        "POST",
        f"/api/v3/app/installations/{reporter.push.installation_id}/access_tokens",
        422,
        times=10,
        body={
            "message": "There is at least one repository that does not exist or is not "
            "accessible to the parent installation."
        },
    )
    with caplog.at_level(logging.WARNING):
        done = reporter.finished(verdict(facts(reporter)))
    assert "not accessible" in done["error"]
    assert redis_client.get(redis_keys.report_fallback(reporter.push.installation_id)) is None
    assert "Checks: Read and write" not in caplog.text


def test_without_checks_the_report_is_a_status_and_the_warning_is_said_once(
    make, simulator, redis_client, app_key, caplog
) -> None:
    simulator.app_permissions = {"contents": "read", "statuses": "write"}
    first = make()
    repo, installation_id = first.push.repository, first.push.installation_id
    with caplog.at_level(logging.WARNING):
        first.started()
        first.finished(verdict(facts(first)))
        second = reporter_for(simulator, redis_client, app_key, repo, installation_id)
        second.started()
    states = [s["state"] for s in simulator.statuses(repo, first.push.sha)]
    assert states == ["pending", "success", "pending"]
    assert caplog.text.count("'Checks: Read and write'") == 1


def test_with_neither_permission_nothing_is_reported_and_both_warnings_are_said(
    make, simulator, caplog
) -> None:
    simulator.app_permissions = {"contents": "read"}
    reporter = make()
    with caplog.at_level(logging.WARNING):
        reporter.started()
        done = reporter.finished(verdict(facts(reporter)))
    assert done["mode"] == "none"
    assert "Commit statuses" in done["error"]
    assert "'Checks: Read and write'" in caplog.text
    assert "'Commit statuses: Read and write'" in caplog.text
    assert simulator.check_runs(reporter.push.repository) == []


def test_a_skipped_commit_gets_no_commit_status(make, simulator) -> None:
    reporter = make(mode="statuses")
    newer = "d" * 40
    done = reporter.finished(
        verdict(Facts("superseded", "x", reporter.push.sha, "r", "d", newer_sha=newer))
    )
    assert done == {"mode": "statuses", "state": None}
    assert simulator.statuses(reporter.push.repository, reporter.push.sha) == []


def test_a_superseded_push_gets_a_check_run_completed_at_once(make, simulator) -> None:
    reporter = make()
    newer = "e" * 40
    reporter.finished(
        verdict(Facts("superseded", "x", reporter.push.sha, "r", "d", newer_sha=newer))
    )
    (check_run,) = simulator.check_runs(reporter.push.repository)
    assert (check_run["status"], check_run["conclusion"]) == ("completed", "skipped")
    assert newer in check_run["output"]["summary"]
