"""The RQ entry point for a push: a thin shell over tokens, checkout, processing and policies."""

from __future__ import annotations

import json
import logging
import random
import time
from datetime import timedelta
from typing import Any

from rq import Queue, get_current_job
from rq.job import Job
from rq.timeouts import JobTimeoutException

from ghapp.core.push_job import FUNCTION as PUSH_JOB
from ghapp.core.push_job import PushJob
from ghapp.core.queueing import retry_policy

from . import runtime
from .branch_lock import branch_lock, newer_commit, superseded_by
from .check_output import Facts, step_label, verdict
from .checkout import Limits
from .failures import DeadlinePassed, Permanent, RateLimited, waits_in_place
from .fetch_policy import fetch_with_retries
from .job_history import note_again, note_end, note_started
from .processing import ProcessingError, ProcessingTimedOut, PushContext, process
from .reporting import Reporter
from .step_report import line_counter
from .tokens import Token, TokenScope
from .workspace import remove_abandoned, workspace

log = logging.getLogger("ghapp.worker.jobs")

PERMISSIONS = {"contents": "read"}


def process_push(**kwargs: Any) -> dict[str, Any]:
    """RQ's entry point for a push job (its arguments: ``PushJob.to_kwargs()``)."""
    return run_push(PushJob.from_kwargs(kwargs))


def run_push(push: PushJob) -> dict[str, Any]:
    """Process one push: exactly commit ``push.sha`` of its repository, as pushed to its ref."""
    started = time.monotonic()
    job = get_current_job()
    assert job is not None, "a push is processed inside an RQ job"
    rt = runtime.current()
    settings = rt.settings
    connection = job.connection
    identity = push.identity
    remove_abandoned()
    reporter = rt.reporter(connection, push, job_id=job.id)
    note_started(job, push)
    # A re-run asked for from GitHub processes its commit whatever the branch did since.
    supersede = settings.supersede_pushes and not push.rerun
    try:
        newer = supersede and superseded_by(connection, push.repository_id, push.ref, push.delivery)
        if not newer:
            # Waiting for another job of the branch may take half the job's time at most.
            wait = max(1, settings.job_timeout // 2)
            with branch_lock(connection, push.repository_id, push.ref, wait=wait):
                newer = supersede and superseded_by(
                    connection, push.repository_id, push.ref, push.delivery
                )
                if not newer:
                    reporter.started()
                    result = _process(job, push, reporter, deadline=started + settings.job_timeout)
    except RateLimited as exc:
        if waits_in_place(exc):
            _end_unless_retried(job, push, reporter, exc)
            raise
        return _reschedule(job, exc, identity)  # its check run stays in progress meanwhile
    except ProcessingError:  # reported by _process, with the step's output
        job.retries_left = 0  # trying again would fail the same way
        _drop_payload(job, push)
        raise
    except Permanent as exc:
        job.retries_left = 0  # the worker logs the failure, in one line
        _report(job, reporter, _facts(push, "cancelled", reason=str(exc).splitlines()[0]))
        _drop_payload(job, push)
        raise
    except DeadlinePassed as exc:
        _end_unless_retried(job, push, reporter, exc, state="timed_out")
        raise
    except JobTimeoutException as exc:
        _end_unless_retried(job, push, reporter, exc, state="timed_out")
        raise
    except Exception as exc:  # Transient, or what nobody foresaw (a full disk, Redis gone)
        _end_unless_retried(job, push, reporter, exc)
        raise
    _drop_payload(job, push)
    if newer:
        log.info("superseded by the newer push of delivery %s", newer)
        sha = newer_commit(connection, push.repository_id, push.ref, newer)
        report = _report(job, reporter, _facts(push, "superseded", newer_sha=sha))
        return {"status": "superseded", "by_delivery": newer, "report": report, **identity}
    total = time.monotonic() - started
    result["seconds"]["total"] = round(total, 4)
    log.info("processed %s at %s in %.2fs", push.repository, push.sha, total)
    return {"status": "processed", **result, **identity}


def _facts(push: PushJob, state: str, **details: Any) -> Facts:
    settings = runtime.current().settings
    return Facts(
        state=state,
        step=step_label(settings.process_command, settings.processor),
        sha=push.sha,
        ref=push.ref,
        delivery=push.delivery,
        **details,
    )


def _report(job: Job, reporter: Reporter, facts: Facts, **kwargs: Any) -> dict[str, Any]:
    """Complete the job's check run; what was reported is kept with the job, and the job's end
    in its delivery's history."""
    report = reporter.finished(verdict(facts, **kwargs))
    job.meta["report"] = report
    job.save_meta()
    note_end(job, PushJob.from_kwargs(job.kwargs), facts, report)
    return report


def _end_unless_retried(
    job: Job, push: PushJob, reporter: Reporter, exc: Exception, *, state: str = "cancelled"
) -> None:
    """A job RQ runs again keeps its check run in progress; one that failed for good ends it."""
    reason = (str(exc).splitlines() or [type(exc).__name__])[0]
    if job.retries_left:
        note_again(job, push, "retried", reason)
        return
    job_timeout = runtime.current().settings.job_timeout
    _report(job, reporter, _facts(push, state, reason=reason, job_timeout=job_timeout))


def report_killed(job: Job, status: int) -> None:
    """Complete the check run of a job whose process was killed and that RQ will not retry."""
    try:
        push = PushJob.from_kwargs(job.kwargs)
        reporter = runtime.current().reporter(job.connection, push, job_id=job.id)
        reason = f"the process running the job was killed (status {status}), its last attempt"
        facts = _facts(push, "cancelled", reason=reason)
        note_end(job, push, facts, reporter.finished(verdict(facts)))
    except Exception as exc:  # the worker goes on whatever reporting does
        log.warning("could not report the killed job %s: %s", job.id, type(exc).__name__)


def _drop_payload(job: Job, push: PushJob) -> None:
    if push.payload_key:
        job.connection.delete(push.payload_key)


def _process(job: Job, push: PushJob, reporter: Reporter, *, deadline: float) -> dict[str, Any]:
    rt = runtime.current()
    settings = rt.settings
    if settings.process_command and rt.sandbox_error:
        raise Permanent(rt.sandbox_error)
    raw = job.connection.get(push.payload_key) if push.payload_key else None
    payload = json.loads(raw) if raw else {}
    tokens = rt.tokens(job.connection)
    scope = TokenScope(repository_ids=(push.repository_id,), permissions=PERMISSIONS)

    def get_token(*, fresh: bool = False) -> Token:
        if fresh:
            tokens.forget(push.installation_id, scope)
        return tokens.token(push.installation_id, scope)

    with workspace() as job_dir:
        log.info("checking out %s at %s", push.repository, push.sha)
        fetch_started = time.monotonic()
        limits = Limits(
            max_bytes=settings.checkout_max_bytes,
            max_files=settings.checkout_max_files,
            timeout=settings.checkout_timeout,
        )
        fetch_with_retries(
            job_dir.checkout,
            clone_url=push.clone_url,
            sha=push.sha,
            github_url=settings.github_url,
            get_token=get_token,
            limits=limits,
            deadline=deadline,
        )
        fetched = time.monotonic()
        context = PushContext(
            path=job_dir.checkout, payload=payload, event=push.event, **push.identity
        )

        def seconds() -> dict[str, float]:
            return {
                "fetch": round(fetched - fetch_started, 4),
                "processing": round(time.monotonic() - fetched, 4),
            }

        lines = line_counter(job_dir.checkout)
        try:
            result, step_report = process(
                context,
                processor=settings.processor,
                command=settings.process_command,
                job_dir=job_dir,
                timeout=max(1.0, deadline - time.monotonic()),
                sandbox=rt.sandbox,
                passed_env=settings.process_env,
                limits=limits,
            )
        except ProcessingError as exc:
            job.retries_left = 0  # the same commit would fail the same way
            state = "timed_out" if isinstance(exc, ProcessingTimedOut) else "failed"
            facts = _facts(
                push,
                state,
                seconds=seconds(),
                exit_status=exc.exit_status,
                output=exc.output,
                reason=exc.reason,
                job_timeout=settings.job_timeout,
            )
            _report(job, reporter, facts, report=exc.report, line_count=lines)
            raise
        result["seconds"] = seconds()
        exit_status = result.get("command", {}).get("exit_status")
        output = result.get("command", {}).get("output", "")
        facts = _facts(
            push, "passed", seconds=result["seconds"], exit_status=exit_status, output=output
        )
        result["report"] = _report(job, reporter, facts, report=step_report, line_count=lines)
        return result


def _reschedule(job: Job, exc: RateLimited, identity: dict[str, str]) -> dict[str, Any]:
    """Run this push again once GitHub's rate limit allows, without holding a worker idle."""
    wait = exc.wait + random.uniform(0, 5)
    queue = Queue(job.origin, connection=job.connection)
    again = queue.enqueue_in(
        timedelta(seconds=wait),
        PUSH_JOB,
        kwargs=job.kwargs,
        job_timeout=job.timeout,
        description=job.description,
        meta=job.meta,
        retry=retry_policy(),
        result_ttl=job.result_ttl,
        failure_ttl=job.failure_ttl,
    )
    log.warning("%s: job %s will run in %.0f s", exc, again.id, wait)
    note_again(job, PushJob.from_kwargs(job.kwargs), "rescheduled", str(exc), again=again.id)
    return {"status": "rescheduled", "job_id": again.id, "in_seconds": round(wait), **identity}
