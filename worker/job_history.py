"""What a job adds to its delivery's history entry and to the metrics: its start, its end (with its
durations, output tail and check run), its retries. Never fails the job: Redis failing here only
loses the record."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import redis
from rq.job import Job

from ghapp.core import history, metrics
from ghapp.core.push_job import PushJob

from .check_output import Facts

log = logging.getLogger("ghapp.worker.history")

# The job's state in the history (and its outcome in ghapp_jobs_total) for each way it ends.
ENDS = {
    "passed": "processed",
    "failed": "failed",
    "timed_out": "failed",
    "cancelled": "failed",
    "superseded": "superseded",
}


def entry_of(job: Job, push: PushJob) -> str:
    """The history entry of the job's delivery (its App is in the job's meta, set at enqueue)."""
    return history.entry_id(str(job.meta.get("app", "-")), push.delivery)


def note_started(job: Job, push: PushJob) -> None:
    _write(job, push, "started", {"job_state": "started", "job_id": job.id}, count=False)


def note_end(job: Job, push: PushJob, facts: Facts, report: dict[str, Any]) -> None:
    """The job ended for good: processed, failed or superseded."""
    state = ENDS[facts.state]
    fields: dict[str, Any] = {
        "job_state": state,
        "job_id": job.id,
        "conclusion": report.get("conclusion"),
        "check_run_url": report.get("url") or None,
        "error": facts.reason if state == "failed" else None,
        "output": facts.output[-history.OUTPUT_LIMIT :] if facts.output else None,
        "seconds_fetch": facts.seconds.get("fetch"),
        "seconds_processing": facts.seconds.get("processing"),
    }
    _write(job, push, state, fields, durations=dict(facts.seconds), reason=facts.reason or None)


def note_again(job: Job, push: PushJob, state: str, reason: str, **detail: Any) -> None:
    """The job runs again later: ``retried`` (RQ's retry policy) or ``rescheduled`` (GitHub's
    rate limit)."""
    _write(job, push, state, {"job_state": state, "error": reason}, reason=reason, **detail)


def _write(
    job: Job,
    push: PushJob,
    state: str,
    fields: dict[str, Any],
    *,
    count: bool = True,
    durations: dict[str, float] | None = None,
    **detail: Any,
) -> None:
    try:
        with job.connection.pipeline(transaction=False) as pipe:
            history.update(pipe, entry_of(job, push), state, fields, job=job.id, **detail)
            if count:
                metrics.count(pipe, "ghapp_jobs_total", outcome=state)
            if durations is not None:
                metrics.observe(pipe, "ghapp_job_duration_seconds", _running_for(job))
                if "fetch" in durations:
                    metrics.observe(pipe, "ghapp_fetch_duration_seconds", durations["fetch"])
            pipe.execute()
    except redis.RedisError as exc:
        log.warning("could not record the job's %s in the history: %s", state, type(exc).__name__)


def _running_for(job: Job) -> float:
    started = job.started_at
    if started is None:
        return 0.0
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - started).total_seconds())
