"""``/metrics`` through the real processes: a push moves the figures every process counts, read
with Prometheus' own parser; METRICS_TOKEN closes the endpoint to anyone without it."""

from __future__ import annotations

import uuid

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from rq.job import JobStatus

from tests.e2e.conftest import JOB_TIMEOUT, Stack
from tests.support import failure_text, wait_for, wait_job

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
QUEUED = ("ghapp_webhooks_total", (("event", "push"), ("outcome", "queued")))
PROCESSED = ("ghapp_jobs_total", (("outcome", "processed"),))
MINTS = ("ghapp_token_mints_total", ())
CREATED = ("ghapp_github_requests_total", (("status", "201"),))
JOB_DURATIONS = ("ghapp_job_duration_seconds_count", ())
FETCH_DURATIONS = ("ghapp_fetch_duration_seconds_count", ())


def scrape(stack: Stack, **headers: str) -> Samples:
    answer = requests.get(f"{stack.url}/metrics", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def test_a_processed_push_moves_the_counts(stack: Stack, fresh_repo_name: str):
    repo = stack.repository(fresh_repo_name)  # a repository of its own: a token of its own
    before = scrape(stack)
    for gauge in ("ghapp_queue_depth", "ghapp_oldest_queued_job_age_seconds", "ghapp_workers"):
        assert (gauge, ()) in before
    assert before[("ghapp_workers", ())] >= 1

    sha = stack.simulator.branch_tip(repo.full_name)
    payload = stack.simulator.push_payload(repo.full_name, before=None, after=sha)
    answer = stack.post(payload, delivery=str(uuid.uuid4()))
    assert answer.status_code == 202, answer.text
    job = wait_job(stack.redis, answer.json()["job_id"], timeout=JOB_TIMEOUT + 40)
    assert job.get_status() == JobStatus.FINISHED, failure_text(job)

    def moved() -> Samples | None:
        after = scrape(stack)
        # A job's figures are counted as it ends, maybe a moment after RQ says it did.
        return after if after.get(PROCESSED, 0) >= before.get(PROCESSED, 0) + 1 else None

    after = wait_for(moved, 10, "ghapp_jobs_total{outcome=processed} to move")
    assert after.get(QUEUED, 0) == before.get(QUEUED, 0) + 1
    assert after[PROCESSED] == before.get(PROCESSED, 0) + 1
    assert after[JOB_DURATIONS] == before[JOB_DURATIONS] + 1
    assert after[FETCH_DURATIONS] == before[FETCH_DURATIONS] + 1
    assert after[MINTS] > before[MINTS]
    # The token, and the check run created: GitHub's 201s.
    assert after[CREATED] >= before.get(CREATED, 0) + 2
    assert after[("ghapp_queue_depth", ())] == 0
    assert after[("ghapp_oldest_queued_job_age_seconds", ())] == 0


@pytest.mark.stack(overrides={"METRICS_TOKEN": "scrape-me-0123456789"}, workers=1)
def test_metrics_token_is_required_as_a_bearer_token(own_stack: Stack):
    url = f"{own_stack.url}/metrics"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "scrape-me"}):
        refused = requests.get(url, headers=headers, timeout=10)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        assert "Authorization: Bearer" in refused.json()["error"]
        assert "scrape-me-0123456789" not in refused.text
    samples = scrape(own_stack, Authorization="Bearer scrape-me-0123456789")
    assert samples[("ghapp_workers", ())] == 1
    # The token never shows up in what the processes logged.
    assert "scrape-me-0123456789" not in own_stack.logs()
