"""Every delivery the web process answered, and the life of its jobs, kept in Redis for the
dashboard, ``ghapp deliveries`` and ``ghapp retry``: readable by every process on any machine.

An entry (a hash) per delivery, named ``<app>:<delivery>`` as the ledger names it, listed newest
first in a sorted set capped at HISTORY_LIMIT (the oldest entries are deleted as new ones come),
with the events of its jobs in a capped list. Refused deliveries (bad signature, bad body) go to
a list of their own, capped too: a flood of them cannot grow Redis, nor push real deliveries out.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

import redis

from ghapp.core import redis_keys

DEFAULT_LIMIT = 10_000
REFUSED_LIMIT = 1_000
EVENTS_LIMIT = 100  # per entry: a job retried many times keeps its newest events
OUTPUT_LIMIT = 16 * 1024  # characters of a job's output tail kept in its entry
# What became of a delivery when it was answered, and of its job since.
DELIVERY_OUTCOMES = ("queued", "duplicate", "ignored", "recorded", "refused")
JOB_STATES = ("started", "processed", "failed", "superseded", "rescheduled", "retried")

# Lua, shared by every script that adds an entry: KEYS[i] is the index; ARGV[j] the limit.
# Deletes the oldest entries (and their events) past the limit.
TRIM_LUA = """
local function trim_history(index, limit)
    local excess = redis.call("ZCARD", index) - limit
    if excess > 0 then
        for _, id in ipairs(redis.call("ZRANGE", index, 0, excess - 1)) do
            redis.call("DEL", "$entry_prefix" .. id, "$events_prefix" .. id)
        end
        redis.call("ZREMRANGEBYRANK", index, 0, excess - 1)
    end
end
"""
RECORD_SCRIPT = (
    TRIM_LUA
    + """
-- KEYS: index, entry, events, counters
-- ARGV: id, score, limit, event JSON, counter field ("": none), field, value, ...
if ARGV[5] ~= "" then
    redis.call("HINCRBY", KEYS[4], ARGV[5], 1)
end
if redis.call("EXISTS", KEYS[2]) == 1 then
    -- A delivery seen before (a redelivery answered duplicate): its entry keeps what it was.
    redis.call("RPUSH", KEYS[3], ARGV[4])
    redis.call("LTRIM", KEYS[3], -$events_limit, -1)
    return 0
end
redis.call("HSET", KEYS[2], unpack(ARGV, 6))
redis.call("RPUSH", KEYS[3], ARGV[4])
redis.call("ZADD", KEYS[1], ARGV[2], ARGV[1])
trim_history(KEYS[1], tonumber(ARGV[3]))
return 1
"""
)
UPDATE_SCRIPT = """
-- KEYS: entry, events   ARGV: event JSON, field, value, ...
if redis.call("EXISTS", KEYS[1]) == 0 then
    return 0  -- pushed out of the history meanwhile: not brought back half-empty
end
if #ARGV > 1 then
    redis.call("HSET", KEYS[1], unpack(ARGV, 2))
end
redis.call("RPUSH", KEYS[2], ARGV[1])
redis.call("LTRIM", KEYS[2], -$events_limit, -1)
return 1
"""


def lua(source: str) -> str:
    """``source`` with this module's key prefixes and limits written in."""
    return (
        source.replace("$entry_prefix", redis_keys.history_entry(""))
        .replace("$events_prefix", redis_keys.history_events(""))
        .replace("$events_limit", str(EVENTS_LIMIT))
    )


def entry_id(app: str, delivery: str) -> str:
    return f"{app}:{delivery}"


def event(state: str, *, at: float | None = None, **detail: Any) -> str:
    """One event of an entry, as stored: JSON with its time."""
    return json.dumps({"at": round(time.time() if at is None else at, 3), "state": state, **detail})


def _flat(fields: Mapping[str, Any]) -> list[str]:
    flat: list[str] = []
    for name, value in fields.items():
        if value is None:
            continue
        flat += [name, value if isinstance(value, str) else json.dumps(value)]
    return flat


def record(
    connection: redis.Redis,
    *,
    app: str,
    delivery: str,
    fields: Mapping[str, Any],
    limit: int = DEFAULT_LIMIT,
    received_at: float | None = None,
    counter: str = "",
) -> bool:
    """Add a delivery's entry (for a delivery seen before, only an event); False then. A
    ``counter`` field (``metrics.counter_field``) is moved by one in the same call."""
    at = time.time() if received_at is None else received_at
    identifier = entry_id(app, delivery)
    state = str(fields.get("outcome", "answered"))
    values = {"id": identifier, "app": app, "delivery": delivery, "received_at": at, **fields}
    script = connection.register_script(lua(RECORD_SCRIPT))
    keys = [
        redis_keys.HISTORY_INDEX,
        redis_keys.history_entry(identifier),
        redis_keys.history_events(identifier),
        redis_keys.METRICS_COUNTERS,
    ]
    args: list[str | int] = [
        identifier,
        int(at * 1000),
        limit,
        event(state, at=at, status=fields.get("status")),
        counter,
        *_flat(values),
    ]
    return bool(script(keys=keys, args=args))


def update(
    connection: redis.Redis | redis.client.Pipeline,
    identifier: str,
    state: str,
    fields: Mapping[str, Any] | None = None,
    *,
    touch: bool = True,
    **detail: Any,
) -> None:
    """Add an event (a job's state) to an entry, and set ``fields`` of it (and ``updated_at``,
    with ``touch``: what the job did, not what was done to the entry); nothing if the entry is
    no longer kept."""
    keys = [redis_keys.history_entry(identifier), redis_keys.history_events(identifier)]
    stamp = {"updated_at": time.time()} if touch else {}
    args = [event(state, **detail), *_flat({**(fields or {}), **stamp})]
    connection.eval(lua(UPDATE_SCRIPT), len(keys), *keys, *args)


def refused(
    connection: redis.Redis,
    *,
    status: int,
    reason: str,
    delivery: str | None,
    event_name: str | None,
    counter: str = "",
) -> None:
    """Note a refused delivery in the capped list of refusals (and move ``counter``)."""
    item = json.dumps(
        {
            "at": round(time.time(), 3),
            "status": status,
            "reason": reason[:300],
            "delivery": delivery,
            "event": event_name,
            "outcome": "refused",
        }
    )
    with connection.pipeline(transaction=False) as pipe:
        pipe.lpush(redis_keys.HISTORY_REFUSED, item)
        pipe.ltrim(redis_keys.HISTORY_REFUSED, 0, REFUSED_LIMIT - 1)
        if counter:
            pipe.hincrby(redis_keys.METRICS_COUNTERS, counter, 1)
        pipe.execute()


# Reading ----------------------------------------------------------------------------------------


def _decode(raw: Mapping[bytes, bytes]) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    for key, value in raw.items():
        name, text = key.decode(), value.decode(errors="replace")
        if name in ("received_at", "updated_at", "seconds_fetch", "seconds_processing"):
            try:
                entry[name] = float(text)
            except ValueError:
                entry[name] = None
        elif name in ("status",):
            entry[name] = int(text) if text.isdigit() else None
        elif name == "push":
            try:
                entry[name] = json.loads(text)
            except ValueError:
                entry[name] = None
        else:
            entry[name] = text
    return entry


def matches(
    entry: Mapping[str, Any],
    *,
    repository: str | None = None,
    outcome: str | None = None,
    event_name: str | None = None,
    since: float | None = None,
) -> bool:
    """Whether an entry passes the filters (``outcome``: what became of the delivery, or of its
    job)."""
    if repository and entry.get("repository") != repository:
        return False
    if outcome and outcome not in (entry.get("outcome"), entry.get("job_state")):
        return False
    if event_name and entry.get("event") != event_name:
        return False
    return not (since is not None and (entry.get("received_at") or 0) < since)


def recent(
    connection: redis.Redis,
    limit: int = 50,
    *,
    repository: str | None = None,
    outcome: str | None = None,
    event_name: str | None = None,
    since: float | None = None,
    scan: int = 5_000,
) -> list[dict[str, Any]]:
    """The newest entries passing the filters, newest first (looking at ``scan`` at most);
    refused deliveries included when ``outcome`` is ``refused`` or no filter excludes them."""
    members: list[bytes] = connection.zrevrange(redis_keys.HISTORY_INDEX, 0, scan - 1)  # type: ignore[assignment]
    ids = [member.decode() for member in members]
    found: list[dict[str, Any]] = []
    for start in range(0, len(ids), 200):
        batch = ids[start : start + 200]
        with connection.pipeline(transaction=False) as pipe:
            for identifier in batch:
                pipe.hgetall(redis_keys.history_entry(identifier))
            raws = pipe.execute()
        for raw in raws:
            if not raw:
                continue  # trimmed while we read
            entry = _decode(raw)
            if matches(
                entry, repository=repository, outcome=outcome, event_name=event_name, since=since
            ):
                found.append(entry)
            if len(found) >= limit:
                break
        if len(found) >= limit:
            break
    if outcome in (None, "refused") and not repository and event_name in (None,):
        found += [r for r in refusals(connection, limit) if since is None or r["at"] >= since]
        found.sort(key=lambda e: e.get("received_at") or e.get("at") or 0, reverse=True)
        found = found[:limit]
    return found


def refusals(connection: redis.Redis, limit: int = 50) -> list[dict[str, Any]]:
    """The newest refused deliveries, newest first."""
    items = connection.lrange(redis_keys.HISTORY_REFUSED, 0, limit - 1)
    refused_items = []
    for item in items:
        try:
            value = json.loads(item)
        except ValueError:
            continue
        if isinstance(value, dict):
            value["received_at"] = value.get("at")
            refused_items.append(value)
    return refused_items


def get(connection: redis.Redis, identifier: str) -> dict[str, Any] | None:
    """One entry with its events (oldest first), or None."""
    with connection.pipeline(transaction=False) as pipe:
        pipe.hgetall(redis_keys.history_entry(identifier))
        pipe.lrange(redis_keys.history_events(identifier), 0, -1)
        raw, events = pipe.execute()
    if not raw:
        return None
    entry = _decode(raw)
    entry["events"] = [json.loads(e) for e in events]
    return entry


def find(connection: redis.Redis, delivery: str) -> list[dict[str, Any]]:
    """The entries of one delivery id (one per App it came for; usually one)."""
    identifiers: Iterable[bytes] = (
        member
        for member, _ in connection.zscan_iter(
            redis_keys.HISTORY_INDEX, match="*:" + re.sub(r"([*?\[\]\\])", r"\\\1", delivery)
        )
    )
    entries = [get(connection, identifier.decode()) for identifier in identifiers]
    return [entry for entry in entries if entry is not None]
