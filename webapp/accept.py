"""Turn an accepted delivery into Redis state: payload, ledger entry and job, in one round trip.

A delivery id is recorded in the same Lua script as its job, so a redelivery after a 2xx is a
duplicate, and a delivery we failed to enqueue left no record and is processed when redelivered.
"""

from __future__ import annotations

import uuid
from enum import Enum

import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.utils import now, utcformat

from ghapp import keys
from ghapp.queueing import PUSH_JOB, hard_timeout, retry_policy
from ghapp.redis_connection import round_trip

from .deliveries import InstallationChange, PushJob

# One round trip. The payload is stored first, by a plain SET: through Lua it cost Redis ten times
# as long (about 1 µs per KB). Then one atomic script refuses a delivery already in the ledger, or
# records it, keeps the payload, notes the branch's newest push, saves the RQ job hash and
# pushes its id on the queue. A duplicate stored no payload (NX); a payload stored for a delivery
# we then refused or failed to queue expires within PAYLOAD_GRACE seconds. The job hash's fields
# that every push job shares are written into the script when it starts.
PAYLOAD_GRACE = 60
ENQUEUE_SCRIPT = """
-- KEYS: ledger, payload, latest push of the branch, job hash, queue list, set of queues
-- ARGV: job id, "<pushed_at> <delivery>", now, job data, description, meta
if redis.call("EXISTS", KEYS[1]) == 1 then
    return 0
end
-- Accepted only with its payload: a SET refused (out of memory) must leave no job behind.
if redis.call("EXISTS", KEYS[2]) == 0 then
    return redis.error_reply("the payload was not stored")
end
redis.call("SET", KEYS[1], ARGV[1], "EX", %(ledger_ttl)d)
redis.call("EXPIRE", KEYS[2], %(payload_ttl)d)
-- The branch's newest push: a late redelivery of an older push must not take its place.
local latest = redis.call("GET", KEYS[3])
local pushed_at = tonumber(string.match(ARGV[2], "^%%d+"))
if not latest or pushed_at >= (tonumber(string.match(latest, "^%%d+")) or 0) then
    redis.call("SET", KEYS[3], ARGV[2], "EX", %(payload_ttl)d)
end
redis.call("HSET", KEYS[4], "created_at", ARGV[3], "enqueued_at", ARGV[3], "data", ARGV[4],
    "description", ARGV[5], "meta", ARGV[6], %(shared)s)
redis.call("SADD", KEYS[6], KEYS[5])
redis.call("RPUSH", KEYS[5], ARGV[1])
return 1
"""
# The job hash's fields that differ from one push to the next; the script sets them.
PER_JOB_FIELDS = ("created_at", "enqueued_at", "data", "description", "meta")


def lua_string(value: str | bytes) -> str:
    """``value`` as a Lua string literal, every byte escaped, so no content can break out."""
    raw = value.encode() if isinstance(value, str) else value
    return '"' + "".join(f"\\{byte}" for byte in raw) + '"'


class PushQueue:
    """Enqueues push jobs for RQ workers, deduplicated by delivery, in one Redis round trip.

    The job hash is the one RQ itself writes for ``Queue.enqueue``, the job data left
    uncompressed; the fields all push jobs share come from a job RQ builds once, at start.
    Building a ``Job`` per delivery cost an eighth of an acknowledgement.
    """

    def __init__(self, queue: Queue, *, job_timeout: int) -> None:
        self.queue = queue
        prototype = queue.create_job(
            PUSH_JOB,
            kwargs={},
            timeout=hard_timeout(job_timeout),
            retry=retry_policy(),
            status=JobStatus.QUEUED,
        )
        prototype.enqueued_at = now()
        shared: list[str] = []
        for name, value in prototype.to_dict().items():
            if name in PER_JOB_FIELDS or value is None or value == "":
                continue  # RQ reads a missing field as empty
            text = value.value if isinstance(value, Enum) else value
            shared += [lua_string(name), lua_string(text if isinstance(text, bytes) else str(text))]
        source = ENQUEUE_SCRIPT % {
            "ledger_ttl": keys.LEDGER_TTL,
            "payload_ttl": keys.PAYLOAD_TTL,
            "shared": ", ".join(shared),
        }
        self.connection = queue.connection
        self.script = self.connection.register_script(source)
        self.dumps = queue.serializer.dumps

    def enqueue(self, push: PushJob, payload_json: bytes, *, app: str) -> str | None:
        """Enqueue ``push`` unless its delivery was accepted before; the job id, or None."""
        payload_key = keys.payload(app, push.delivery)
        job_id = uuid.uuid4().hex
        kwargs = {**push.as_kwargs(), "payload_key": payload_key}
        # RQ's job data is its serializer's (function, instance, args, kwargs); RQ compresses
        # it, and reads it back uncompressed as well: compressing would cost more than it saves.
        script_keys = (
            keys.delivery(app, push.delivery),
            payload_key,
            keys.latest_push(push.repository_id, push.ref),
            Job.key_for(job_id),
            self.queue.key,
            self.queue.redis_queues_keys,
        )
        script_args = (
            job_id,
            f"{push.pushed_at} {push.delivery}",
            utcformat(now()),
            self.dumps((PUSH_JOB, None, (), kwargs)),
            f"push {push.repository} {push.ref} {push.sha[:12]}",
            self.dumps({"delivery": push.delivery}),
        )
        store = ("SET", payload_key, payload_json, "NX", "EX", PAYLOAD_GRACE)
        run = ("EVALSHA", self.script.sha, len(script_keys), *script_keys, *script_args)
        stored, accepted = round_trip(self.connection, store, run)
        if isinstance(accepted, redis.exceptions.NoScriptError):  # Redis restarted or flushed
            self.connection.script_load(self.script.script)
            stored, accepted = round_trip(self.connection, store, run)
        for reply in (stored, accepted):
            if isinstance(reply, Exception):
                raise reply
        return job_id if accepted else None


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
