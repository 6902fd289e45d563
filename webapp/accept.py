"""Turn an accepted delivery into Redis state: ledger entry, payload and job, atomically.

A delivery id is recorded in the same Lua script as its job, so a redelivery after a 2xx is a
duplicate, and a delivery we failed to enqueue left no trace and is processed when redelivered.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from enum import Enum

import redis
from rq import Queue
from rq.job import JobStatus

from ghapp import keys
from ghapp.queueing import PUSH_JOB, hard_timeout, retry_policy

from .deliveries import InstallationChange, PushJob

# One round trip, atomic: refuse a delivery already in the ledger, else record it, store the
# payload, note the branch's newest push, save the RQ job hash and push its id on the queue.
ENQUEUE_SCRIPT = """
-- KEYS: ledger, payload, latest push of the branch, job hash, queue list, set of queues
-- ARGV: job id, ledger ttl, payload, payload ttl, "<pushed_at> <delivery>", the job hash's text
--       fields as a JSON object of strings, then its binary fields as name, value pairs
if redis.call("EXISTS", KEYS[1]) == 1 then
    return 0
end
redis.call("SET", KEYS[1], ARGV[1], "EX", ARGV[2])
redis.call("SET", KEYS[2], ARGV[3], "EX", ARGV[4])
-- The branch's newest push: a late redelivery of an older push must not take its place.
local latest = redis.call("GET", KEYS[3])
local pushed_at = tonumber(string.match(ARGV[5], "^%d+"))
if not latest or pushed_at >= (tonumber(string.match(latest, "^%d+")) or 0) then
    redis.call("SET", KEYS[3], ARGV[5], "EX", ARGV[4])
end
local fields = {}
for name, value in pairs(cjson.decode(ARGV[6])) do
    fields[#fields + 1] = name
    fields[#fields + 1] = value
end
for i = 7, #ARGV do
    fields[#fields + 1] = ARGV[i]
end
redis.call("HSET", KEYS[4], unpack(fields))
redis.call("SADD", KEYS[6], KEYS[5])
redis.call("RPUSH", KEYS[5], ARGV[1])
return 1
"""


class PushQueue:
    """Enqueues push jobs for RQ workers, deduplicated by delivery, in one Redis round trip."""

    def __init__(self, queue: Queue, *, job_timeout: int) -> None:
        self.queue = queue
        self.job_timeout = job_timeout
        self.script = queue.connection.register_script(ENQUEUE_SCRIPT)

    def enqueue(self, push: PushJob, payload_json: bytes, *, app: str) -> str | None:
        """Enqueue ``push`` unless its delivery was accepted before; the job id, or None."""
        payload_key = keys.payload(app, push.delivery)
        job = self.queue.create_job(
            PUSH_JOB,
            kwargs={**push.as_kwargs(), "payload_key": payload_key},
            job_id=uuid.uuid4().hex,
            timeout=hard_timeout(self.job_timeout),
            description=f"push {push.repository} {push.ref} {push.sha[:12]}",
            meta={"delivery": push.delivery},
            retry=retry_policy(),
            status=JobStatus.QUEUED,
        )
        job.enqueued_at = datetime.now(UTC)
        # Few arguments make a cheap call: the text fields travel as one JSON object.
        text: dict[str, str] = {}
        binary: list[str | bytes] = []
        for name, value in job.to_dict().items():
            if value is None or value == "":  # RQ reads a missing field as empty
                continue
            if isinstance(value, bytes):
                binary += [name, value]
            else:
                text[name] = str(value.value if isinstance(value, Enum) else value)
        accepted = self.script(
            keys=[
                keys.delivery(app, push.delivery),
                payload_key,
                keys.latest_push(push.repository_id, push.ref),
                job.key,
                self.queue.key,
                self.queue.redis_queues_keys,
            ],
            args=[
                job.id,
                keys.LEDGER_TTL,
                payload_json,
                keys.PAYLOAD_TTL,
                f"{push.pushed_at} {push.delivery}",
                json.dumps(text),
                *binary,
            ],
        )
        return job.id if accepted else None


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
