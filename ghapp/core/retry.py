"""Run a push again on an operator's word (the dashboard's "Run again", ``ghapp retry``): a fresh
job for the push a history entry recorded, under a delivery id of its own, like a GitHub re-run.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from typing import Any

import redis
from rq import Queue

from ghapp.core import history
from ghapp.core.push_job import FUNCTION as PUSH_JOB
from ghapp.core.push_job import PushJob
from ghapp.core.queueing import hard_timeout, retry_policy
from ghapp.core.settings import Settings

# GHAPP_EVENT of a job run again by an operator (a re-run: no push supersedes it).
EVENT = "retry"


class NotRetryable(Exception):
    """The entry holds no push to run again; the message says why."""


@dataclasses.dataclass(frozen=True)
class Requeued:
    delivery: str  # the new job's own delivery id (its check run's external_id)
    job_id: str


def queue_again(connection: redis.Redis, entry: Mapping[str, Any], settings: Settings) -> Requeued:
    """Queue a fresh job for the push of ``entry`` (from ``history``), as ``settings`` queue
    pushes (QUEUE, JOB_TIMEOUT, RESULT_TTL, FAILURE_TTL), recorded in the history as a delivery
    of its own and as an event of the original."""
    fields = entry.get("push")
    if not isinstance(fields, dict):
        raise NotRetryable(
            f"delivery {entry.get('delivery')} was {entry.get('outcome', 'not queued')}: "
            "it holds no push to run again"
        )
    original = PushJob.from_kwargs(fields)
    delivery = f"{original.delivery[:60]}-again-{uuid.uuid4().hex[:8]}"
    push = dataclasses.replace(original, delivery=delivery, payload_key=None, event=EVENT)
    app = str(entry.get("app") or "-")
    job_id = uuid.uuid4().hex
    # Recorded before it is queued: a worker that takes it at once finds its entry.
    history.record(
        connection,
        app=app,
        delivery=delivery,
        fields={
            "event": EVENT,
            "repository": push.repository,
            "ref": push.ref,
            "sha": push.sha,
            "outcome": "queued",
            "reason": f"run again from delivery {original.delivery}",
            "job_id": job_id,
            "push": {k: v for k, v in push.to_kwargs().items() if k != "payload_key"},
        },
        limit=settings.history_limit,
    )
    job = Queue(settings.queue_name, connection=connection).enqueue(
        PUSH_JOB,
        job_id=job_id,
        kwargs=push.to_kwargs(),
        job_timeout=hard_timeout(settings.job_timeout),
        retry=retry_policy(),
        result_ttl=settings.result_ttl,
        failure_ttl=settings.failure_ttl,
        description=f"retry {push.repository} {push.ref} {push.sha[:12]}",
        meta={"delivery": delivery, "app": app},
    )
    history.update(
        connection,
        history.entry_id(app, original.delivery),
        "run again",
        {"run_again_as": delivery},
        delivery=delivery,
        job=job.id,
        touch=False,
    )
    return Requeued(delivery=delivery, job_id=job.id)
