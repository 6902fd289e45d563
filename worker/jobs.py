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

from ghapp.queueing import PUSH_JOB, retry_policy

from . import runtime
from .branch_lock import branch_lock, superseded_by
from .checkout import Limits
from .failures import Permanent, RateLimited
from .fetch_policy import fetch_with_retries
from .processing import PushContext, process
from .tokens import SHORT_WAIT, Token
from .workspace import remove_abandoned, workspace

log = logging.getLogger("ghapp.worker.jobs")

PERMISSIONS = {"contents": "read"}


def process_push(
    *,
    delivery: str,
    installation_id: int,
    repository_id: int,
    repository: str,
    clone_url: str,
    ref: str,
    before: str,
    sha: str,
    payload_key: str | None = None,
) -> dict[str, Any]:
    """Process one push: exactly commit ``sha`` of ``repository``, as pushed to ``ref``."""
    started = time.monotonic()
    job = get_current_job()
    assert job is not None, "process_push runs inside an RQ job"
    settings = runtime.current().settings
    connection = job.connection
    identity = {"delivery": delivery, "repository": repository, "ref": ref, "sha": sha}
    remove_abandoned()
    try:
        newer = settings.supersede_pushes and superseded_by(
            connection, repository_id, ref, delivery
        )
        if not newer:
            # Waiting for another job of the branch may take half the job's time at most.
            wait = max(1, settings.job_timeout // 2)
            with branch_lock(connection, repository_id, ref, wait=wait):
                newer = settings.supersede_pushes and superseded_by(
                    connection, repository_id, ref, delivery
                )
                if not newer:
                    result = _process(
                        job,
                        identity,
                        installation_id,
                        repository_id,
                        clone_url,
                        payload_key,
                        deadline=started + settings.job_timeout,
                    )
    except RateLimited as exc:
        if exc.wait <= SHORT_WAIT:
            raise
        return _reschedule(job, exc, identity)
    except Permanent as exc:
        job.retries_left = 0  # trying again would fail the same way
        log.error("failed for good: %s", exc)
        if payload_key:
            connection.delete(payload_key)
        raise
    if payload_key:
        connection.delete(payload_key)
    if newer:
        log.info("superseded by the newer push of delivery %s", newer)
        return {"status": "superseded", "by_delivery": newer, **identity}
    total = time.monotonic() - started
    result["seconds"]["total"] = round(total, 4)
    log.info("processed %s at %s in %.2fs", repository, sha, total)
    return {"status": "processed", **result, **identity}


def _process(
    job: Job,
    identity: dict[str, str],
    installation_id: int,
    repository_id: int,
    clone_url: str,
    payload_key: str | None,
    *,
    deadline: float,
) -> dict[str, Any]:
    rt = runtime.current()
    settings = rt.settings
    if settings.process_command and rt.sandbox_error:
        raise Permanent(rt.sandbox_error)
    raw = job.connection.get(payload_key) if payload_key else None
    payload = json.loads(raw) if raw else {}
    tokens = rt.tokens(job.connection)
    repository_ids = (repository_id,)

    def get_token(refresh: bool) -> Token:
        if refresh:
            tokens.forget(installation_id, repository_ids=repository_ids, permissions=PERMISSIONS)
        return tokens.token(installation_id, repository_ids=repository_ids, permissions=PERMISSIONS)

    with workspace() as root:
        checkout = root / "checkout"
        log.info("checking out %(repository)s at %(sha)s", identity)
        fetch_started = time.monotonic()
        fetch_with_retries(
            checkout,
            clone_url=clone_url,
            sha=identity["sha"],
            github_url=settings.github_url,
            get_token=get_token,
            limits=Limits(
                max_bytes=settings.checkout_max_bytes,
                max_files=settings.checkout_max_files,
                timeout=settings.checkout_timeout,
            ),
            deadline=deadline,
        )
        fetched = time.monotonic()
        context = PushContext(path=checkout, payload=payload, **identity)
        result = process(
            context,
            processor=settings.processor,
            command=settings.process_command,
            event_path=root / "event.json",
            timeout=max(1.0, deadline - time.monotonic()),
            sandbox=rt.sandbox,
            passed_env=settings.process_env,
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
