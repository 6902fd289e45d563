"""Turn an accepted delivery into Redis state: payload, ledger entry and job, in one round trip.

A delivery id, and the push it carries (repository, ref, before, after), are recorded in the same
Lua script as its job, so a redelivery after a 2xx, or the same signed body replayed under another
delivery id, is a duplicate, and a delivery we failed to enqueue left no record and is processed
when redelivered.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Mapping
from enum import Enum
from string import Template

import orjson
import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.utils import now, utcformat

from ghapp.core import history, metrics, redis_keys
from ghapp.core.push_job import FUNCTION as PUSH_JOB
from ghapp.core.push_job import PushJob
from ghapp.core.queueing import hard_timeout, retry_policy
from ghapp.core.redis_connection import round_trip

from .deliveries import MAX_CLOCK_SKEW, ZERO_SHA, InstallationChange

# One round trip. The payload is stored first, by a plain SET: through Lua it cost Redis ten times
# as long (about 1 µs per KB). Then one atomic script refuses a delivery already in the ledger,
# or the same push under another delivery id (a signed body replayed), or records it, keeps the
# payload, notes the branch's newest push, saves the RQ job hash and pushes its id on the queue.
# A duplicate leaves no payload behind (NX; what it stored is dropped); a payload stored for a
# delivery we failed to queue expires within PAYLOAD_GRACE seconds. The job hash's fields that
# every push job shares are written into the script when it starts.
PAYLOAD_GRACE = 60
# Pushes tied for newest (the same pushed_at, neither the other's parent) listed by name; past
# this many, "*": each is processed.
MAX_TIED = 8
ENQUEUE_SCRIPT = Template("""
-- KEYS: ledger, payload, newest push of the branch, push, job hash, queue list, set of queues,
--       history index, history entry, history events, metrics counters
-- ARGV: job id, pushed_at, before, after, delivery, latest believable pushed_at, now,
--       job data, description, meta, "1" for a re-run asked for on GitHub (not a push: it
--       neither is the branch's newest push nor a duplicate of the push it runs again),
--       history limit, history score, queued event, duplicate event, queued counter field,
--       duplicate counter field, history entry id, entry fields (name, value, ...)
local rerun = ARGV[11] == "1"
$trim_history
-- The delivery in the history (a delivery seen before gets an event only), and its count.
local function remember(outcome, event, counter, ...)
    redis.call("HINCRBY", KEYS[11], counter, 1)
    -- Queued is what the delivery is now, even if it was ignored before (a redelivery after
    -- PUSH_BRANCHES changed); a duplicate leaves the entry as it was.
    if outcome == "queued" or redis.call("EXISTS", KEYS[9]) == 0 then
        redis.call("HDEL", KEYS[9], "reason")
        redis.call("HSET", KEYS[9], "outcome", outcome, ...)
        redis.call("HSET", KEYS[9], unpack(ARGV, 19))
        redis.call("ZADD", KEYS[8], ARGV[13], ARGV[18])
        trim_history(KEYS[8], tonumber(ARGV[12]))
    end
    redis.call("RPUSH", KEYS[10], event)
    redis.call("LTRIM", KEYS[10], -$events_limit, -1)
end
if redis.call("EXISTS", KEYS[1]) == 1 then
    -- A redelivery: a payload this request stored goes (the accepted job's lives for days).
    local ttl = redis.call("TTL", KEYS[2])
    if ttl >= 0 and ttl <= $payload_grace then
        redis.call("DEL", KEYS[2])
    end
    remember("duplicate", ARGV[15], ARGV[17], "status", "200")
    return 0
end
if not rerun and redis.call("EXISTS", KEYS[4]) == 1 then
    -- The same push under a delivery id never accepted: the payload is this delivery's own.
    redis.call("DEL", KEYS[2])
    local first = redis.call("GET", KEYS[4])
    remember("duplicate", ARGV[15], ARGV[17], "status", "200",
        "reason", "the same push was accepted as delivery " .. tostring(first))
    return 0
end
-- Accepted only with its payload: a SET refused (out of memory) must leave no job behind.
if redis.call("EXISTS", KEYS[2]) == 0 then
    return redis.error_reply("the payload was not stored")
end
redis.call("SET", KEYS[1], ARGV[1], "EX", $ledger_ttl)
if not rerun then
    redis.call("SET", KEYS[4], ARGV[5], "EX", $ledger_ttl)
end
redis.call("EXPIRE", KEYS[2], $payload_ttl)

-- The branch's newest pushes, stored as "<pushed_at> <before>:<after>:<delivery> ...": one,
-- or several tied. nil for anything else (another format, another type): it is replaced.
local function read_newest(stored)
    if type(stored) ~= "string" then
        return nil
    end
    local at, rest = string.match(stored, "^(%d+) (.*)$$")
    if not at or #at > 15 then
        return nil
    end
    local members = {}
    for token in string.gmatch(rest, "%S+") do
        local before, after, delivery = string.match(token, "^(%x*):(%x*):([%w_%-]+)$$")
        if delivery then
            members[#members + 1] = {before, after, delivery}
        elseif token == "*" or string.match(token, "^[%w_%-]+$$") then
            members[#members + 1] = {"", "", token}  -- too many tied; or a bare delivery id
        else
            return nil
        end
    end
    if #members == 0 then
        return nil
    end
    return tonumber(at), members
end

local function listed(at, members)
    local tokens = {string.format("%d", at)}
    for _, m in ipairs(members) do
        if m[3] == "*" or #members > $max_tied then
            return tokens[1] .. " *"
        end
        tokens[#tokens + 1] = m[1] .. ":" .. m[2] .. ":" .. m[3]
    end
    return table.concat(tokens, " ")
end

-- Newer from the commit chain where it links (this push's before is a newest push's after: it
-- follows it; its after is a newest push's before: it precedes it), from pushed_at otherwise.
-- nil: the stored pushes stay newest. A stored pushed_at later than any push can have now was
-- not written by this script: replaced.
local function newest_with(stored, pushed_at, push)
    local stored_at, members = read_newest(stored)
    if not stored_at or stored_at > tonumber(ARGV[6]) then
        return listed(pushed_at, {push})
    end
    local precedes, remaining = false, {}
    for _, m in ipairs(members) do
        if push[2] == m[1] then
            precedes = true
        end
        if push[1] ~= "$zero" and push[1] == m[2] then
            -- this push follows m: m is newest no more
        else
            remaining[#remaining + 1] = m
        end
    end
    local follows = #remaining < #members
    if follows and not precedes then
        if pushed_at > stored_at or #remaining == 0 then
            return listed(math.max(pushed_at, stored_at), {push})
        end
        remaining[#remaining + 1] = push
        return listed(stored_at, remaining)
    end
    if precedes and not follows then
        return nil
    end
    if pushed_at > stored_at then
        return listed(pushed_at, {push})
    end
    if pushed_at < stored_at then
        return nil
    end
    members[#members + 1] = push  -- a tie: neither supersedes the other
    return listed(stored_at, members)
end

local pushed_at = 0
if string.match(ARGV[2], "^%d+$$") and #ARGV[2] <= 15 then
    pushed_at = tonumber(ARGV[2])
end
local newest = nil
if not rerun then
    newest = newest_with(redis.pcall("GET", KEYS[3]), pushed_at, {ARGV[3], ARGV[4], ARGV[5]})
end
if newest then
    redis.call("SET", KEYS[3], newest, "EX", $payload_ttl)
end
redis.call("HSET", KEYS[5], "created_at", ARGV[7], "enqueued_at", ARGV[7], "data", ARGV[8],
    "description", ARGV[9], "meta", ARGV[10], $shared)
redis.call("SADD", KEYS[7], KEYS[6])
redis.call("RPUSH", KEYS[6], ARGV[1])
remember("queued", ARGV[14], ARGV[16], "status", "202", "job_id", ARGV[1])
return 1
""")
# The job hash's fields that differ from one push to the next; the script sets them.
PER_JOB_FIELDS = ("created_at", "enqueued_at", "data", "description", "meta")


# Every field of the job hash RQ writes for a push job, as of the RQ version the tests ran with.
KNOWN_JOB_FIELDS = frozenset(
    {
        "created_at",
        "data",
        "description",
        "ended_at",
        "enqueued_at",
        "failure_callback_name",
        "failure_ttl",
        "group_id",
        "last_heartbeat",
        "origin",
        "result_ttl",
        "retries_left",
        "retry_intervals",
        "started_at",
        "status",
        "stopped_callback_name",
        "success_callback_name",
        "timeout",
        "worker_name",
    }
)


class UnknownJobFormat(Exception):
    """The installed RQ writes job fields this version of ghapp does not know."""


def check_job_fields(fields: Mapping[str, object]) -> None:
    """Refuse to write RQ's job hash by hand for an RQ that writes fields we do not know: a job
    missing one could be misread by that RQ's workers."""
    unknown = sorted(set(fields) - KNOWN_JOB_FIELDS)
    if unknown:
        import rq

        raise UnknownJobFormat(
            f"RQ {rq.__version__} writes job fields ghapp does not know ({', '.join(unknown)}): "
            "install the RQ version of requirements.lock (pip install -r requirements.lock)"
        )


def lua_string(value: str | bytes) -> str:
    """``value`` as a Lua string literal, every byte escaped, so no content can break out."""
    raw = value.encode() if isinstance(value, str) else value
    return '"' + "".join(f"\\{byte}" for byte in raw) + '"'


class PushQueue:
    """Enqueues push jobs for RQ workers, deduplicated by delivery and by push (repository,
    ref, before, after), in one Redis round trip.

    The job hash is the one RQ itself writes for ``Queue.enqueue``, the job data left
    uncompressed; the fields all push jobs share come from a job RQ builds once, at start.
    Building a ``Job`` per delivery cost an eighth of an acknowledgement.
    """

    def __init__(
        self,
        queue: Queue,
        *,
        job_timeout: int,
        result_ttl: int | None = None,
        failure_ttl: int | None = None,
        history_limit: int = history.DEFAULT_LIMIT,
    ) -> None:
        self.queue = queue
        self.history_limit = history_limit
        prototype = queue.create_job(
            PUSH_JOB,
            kwargs={},
            timeout=hard_timeout(job_timeout),
            retry=retry_policy(),
            status=JobStatus.QUEUED,
            result_ttl=result_ttl,
            failure_ttl=failure_ttl,
        )
        prototype.enqueued_at = now()
        fields = prototype.to_dict()
        check_job_fields(fields)
        shared: list[str] = []
        for name, value in fields.items():
            if name in PER_JOB_FIELDS or value is None or value == "":
                continue  # RQ reads a missing field as empty
            text = value.value if isinstance(value, Enum) else value
            shared += [lua_string(name), lua_string(text if isinstance(text, bytes) else str(text))]
        source = ENQUEUE_SCRIPT.substitute(
            ledger_ttl=redis_keys.LEDGER_TTL,
            payload_ttl=redis_keys.PAYLOAD_TTL,
            payload_grace=PAYLOAD_GRACE,
            max_tied=MAX_TIED,
            zero=ZERO_SHA,
            shared=", ".join(shared),
            trim_history=history.lua(history.TRIM_LUA),
            events_limit=history.EVENTS_LIMIT,
        )
        self.connection = queue.connection
        self.script = self.connection.register_script(source)
        self.dumps = queue.serializer.dumps

    def enqueue(
        self, push: PushJob, payload_json: bytes, *, app: str, action: str | None = None
    ) -> str | None:
        """Enqueue ``push`` unless its delivery, or the same push of the same branch under
        another delivery id, was accepted before; the job id, or None. Either way the delivery
        is in the history, and counted."""
        payload_key = redis_keys.payload(app, push.delivery)
        job_id = uuid.uuid4().hex
        kwargs = dataclasses.replace(push, payload_key=payload_key).to_kwargs()
        received = time.time()
        entry = history.entry_id(app, push.delivery)
        # RQ's job data is its serializer's (function, instance, args, kwargs); RQ compresses
        # it, and reads it back uncompressed as well: compressing would cost more than it saves.
        script_keys = (
            redis_keys.delivery(app, push.delivery),
            payload_key,
            redis_keys.latest_push(push.repository_id, push.ref),
            redis_keys.push(app, push.repository_id, push.ref, push.before, push.sha),
            Job.key_for(job_id),
            self.queue.key,
            self.queue.redis_queues_keys,
            redis_keys.HISTORY_INDEX,
            redis_keys.history_entry(entry),
            redis_keys.history_events(entry),
            redis_keys.METRICS_COUNTERS,
        )
        recorded = {
            "id": entry,
            "app": app,
            "delivery": push.delivery,
            "received_at": repr(received),
            "event": push.event,
            "action": action,
            "repository": push.repository,
            "ref": push.ref,
            "sha": push.sha,
            "push": orjson.dumps({k: v for k, v in kwargs.items() if k != "payload_key"}),
        }
        script_args = (
            job_id,
            int(push.pushed_at),
            push.before,
            push.sha,
            push.delivery,
            int(time.time()) + MAX_CLOCK_SKEW,
            utcformat(now()),
            self.dumps((PUSH_JOB, None, (), kwargs)),
            f"{'re-run' if push.rerun else 'push'} {push.repository} {push.ref} {push.sha[:12]}",
            self.dumps({"delivery": push.delivery, "app": app}),
            "1" if push.rerun else "0",
            self.history_limit,
            int(received * 1000),
            history.event("queued", at=received, status=202, job=job_id),
            history.event("duplicate", at=received, status=200),
            metrics.counter_field("ghapp_webhooks_total", event=push.event, outcome="queued"),
            metrics.counter_field("ghapp_webhooks_total", event=push.event, outcome="duplicate"),
            entry,
            *(item for name, value in recorded.items() if value for item in (name, value)),
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
    key = redis_keys.installation(change.installation_id)
    repos = redis_keys.installation_repositories(change.installation_id)
    with connection.pipeline() as pipe:
        fields = ["id", str(change.installation_id), "action", change.action]
        if change.account:
            fields += ["account", change.account]
        pipe.hset(key, items=fields)
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
    connection.delete(redis_keys.tokens(installation_id))
