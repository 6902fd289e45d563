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

from ghapp.core.push_job import FUNCTION as PUSH_JOB
from ghapp.core.push_job import PushJob
from ghapp.core.queueing import retry_policy

from . import runtime
from .branch_lock import branch_lock, superseded_by
from .checkout import Limits
from .failures import Permanent, RateLimited, waits_in_place
from .fetch_policy import fetch_with_retries
from .processing import PushContext, process
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
    settings = runtime.current().settings
    connection = job.connection
    identity = push.identity
    remove_abandoned()
    try:
        newer = settings.supersede_pushes and superseded_by(
            connection, push.repository_id, push.ref, push.delivery
        )
        if not newer:
            # Waiting for another job of the branch may take half the job's time at most.
            wait = max(1, settings.job_timeout // 2)
            with branch_lock(connection, push.repository_id, push.ref, wait=wait):
                newer = settings.supersede_pushes and superseded_by(
                    connection, push.repository_id, push.ref, push.delivery
                )
                if not newer:
                    result = _process(job, push, deadline=started + settings.job_timeout)
    except RateLimited as exc:
        if waits_in_place(exc):
            raise
        return _reschedule(job, exc, identity)
    except Permanent as exc:
        job.retries_left = 0  # trying again would fail the same way
        log.error("failed for good: %s", exc)
        if push.payload_key:
            connection.delete(push.payload_key)
        raise
    if push.payload_key:
        connection.delete(push.payload_key)
    if newer:
        log.info("superseded by the newer push of delivery %s", newer)
        return {"status": "superseded", "by_delivery": newer, **identity}
    total = time.monotonic() - started
    result["seconds"]["total"] = round(total, 4)
    log.info("processed %s at %s in %.2fs", push.repository, push.sha, total)
    return {"status": "processed", **result, **identity}


def _process(job: Job, push: PushJob, *, deadline: float) -> dict[str, Any]:
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
        context = PushContext(path=job_dir.checkout, payload=payload, **push.identity)
        result = process(
            context,
            processor=settings.processor,
            command=settings.process_command,
            job_dir=job_dir,
            timeout=max(1.0, deadline - time.monotonic()),
            sandbox=rt.sandbox,
            passed_env=settings.process_env,
            limits=limits,
        )
        result["seconds"] = {
            "fetch": round(fetched - fetch_started, 4),
            "processing": round(time.monotonic() - fetched, 4),
        }
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
    )
    log.warning("%s: job %s will run in %.0f s", exc, again.id, wait)
    return {"status": "rescheduled", "job_id": again.id, "in_seconds": round(wait), **identity}
