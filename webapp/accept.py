"""Turn an accepted delivery into Redis state: ledger entry, payload and job, atomically.

A delivery id is recorded in the same MULTI/EXEC as its job, so a redelivery after a 2xx is a
duplicate, and a delivery we failed to enqueue left no trace and is processed when redelivered.
"""

from __future__ import annotations

import uuid

import redis
from rq import Queue

from ghapp import keys
from ghapp.queueing import PUSH_JOB, hard_timeout, retry_policy

from .deliveries import InstallationChange, PushJob


def enqueue_push(
    queue: Queue,
    push: PushJob,
    payload_json: bytes,
    *,
    app: str,
    job_timeout: int,
) -> str | None:
    """Enqueue ``push`` unless its delivery was accepted before; return the job id, or None."""
    ledger = keys.delivery(app, push.delivery)
    payload_key = keys.payload(app, push.delivery)
    job_id = uuid.uuid4().hex
    with queue.connection.pipeline() as pipe:
        while True:
            try:
                pipe.watch(ledger)
                if pipe.exists(ledger):
                    return None
                pipe.multi()
                pipe.set(ledger, job_id, ex=keys.LEDGER_TTL)
                pipe.set(payload_key, payload_json, ex=keys.PAYLOAD_TTL)
                pipe.set(
                    keys.latest_push(push.repository_id, push.ref),
                    push.delivery,
                    ex=keys.PAYLOAD_TTL,
                )
                queue.enqueue_call(
                    PUSH_JOB,
                    kwargs={**push.as_kwargs(), "payload_key": payload_key},
                    job_id=job_id,
                    timeout=hard_timeout(job_timeout),
                    description=f"push {push.repository} {push.ref} {push.sha[:12]}",
                    meta={"delivery": push.delivery},
                    retry=retry_policy(),
                    pipeline=pipe,
                )
                pipe.execute()
                return job_id
            except redis.WatchError:
                # Another request recorded the same delivery between WATCH and EXEC: look again.
                continue


def record_installation(connection: redis.Redis, change: InstallationChange) -> None:
    """Keep what GitHub told us about an installation; drop its tokens when it goes away."""
    key = keys.installation(change.installation_id)
    repos = keys.installation_repositories(change.installation_id)
    with connection.pipeline() as pipe:
        fields = {"id": str(change.installation_id), "action": change.action}
        if change.account:
            fields["account"] = change.account
        pipe.hset(key, mapping=fields)
        if change.action == "created":
            pipe.delete(repos)
        if change.repositories_added:
            pipe.sadd(repos, *change.repositories_added)
        if change.repositories_removed:
            pipe.srem(repos, *change.repositories_removed)
        pipe.execute()
    if change.drop_tokens:
        drop_tokens(connection, change.installation_id)


def drop_tokens(connection: redis.Redis, installation_id: int) -> None:
    connection.delete(keys.tokens(installation_id))
