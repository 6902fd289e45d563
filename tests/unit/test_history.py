"""The delivery history in Redis: entries newest first, capped, their events, the refusals' own
capped list, and the filters every reader uses."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from ghapp.core import history, metrics, redis_keys
from ghapp.embedded_redis import EmbeddedRedis
from tests.support import claim_empty_db, with_db


@pytest.fixture(scope="module")
def own_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    """A Redis database of this module's own: an empty one of REDIS_URL's server (claimed by
    its base URL, never the session's), or an embedded server of its own."""
    shared = os.environ.get("REDIS_URL")
    if shared:
        client = redis.Redis.from_url(with_db(shared, claim_empty_db(shared)))
        yield client
        client.flushdb()  # it was empty when claimed: all of it is ours
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("history-redis"))
    client = redis.Redis.from_url(server.start())
    yield client
    server.stop()


@pytest.fixture
def connection(own_db: redis.Redis) -> redis.Redis:
    """That database, emptied for each test."""
    own_db.flushdb()
    return own_db


def add(connection: redis.Redis, n: int, limit: int = 1000, **fields) -> str:
    delivery = f"d{n}-{uuid.uuid4().hex[:6]}"
    values = {"event": "push", "repository": "o/r", "outcome": "queued", "status": 202, **fields}
    history.record(
        connection, app="1", delivery=delivery, fields=values, limit=limit, received_at=1000.0 + n
    )
    return delivery


def test_entries_are_read_back_newest_first_with_their_fields(connection) -> None:
    first = add(connection, 1, push={"sha": "a" * 40})
    second = add(connection, 2, repository="o/other", outcome="ignored", reason="ping")
    entries = history.recent(connection, 10)
    assert [e["delivery"] for e in entries] == [second, first]
    assert entries[0]["outcome"] == "ignored"
    assert entries[0]["reason"] == "ping"
    assert entries[1]["push"] == {"sha": "a" * 40}
    assert entries[1]["status"] == 202
    assert entries[1]["received_at"] == 1001.0
    assert entries[1]["id"] == history.entry_id("1", first)


def test_the_history_keeps_its_limit_and_deletes_what_it_drops(connection) -> None:
    deliveries = [add(connection, n, limit=5) for n in range(8)]
    kept = [e["delivery"] for e in history.recent(connection, 100)]
    assert kept == list(reversed(deliveries[3:]))
    dropped = history.entry_id("1", deliveries[0])
    assert not connection.exists(redis_keys.history_entry(dropped))
    assert not connection.exists(redis_keys.history_events(dropped))


def test_a_delivery_seen_again_keeps_its_entry_and_gains_an_event(connection) -> None:
    delivery = add(connection, 1)
    again = history.record(
        connection, app="1", delivery=delivery, fields={"outcome": "duplicate", "status": 200}
    )
    assert again is False
    entry = history.get(connection, history.entry_id("1", delivery))
    assert entry is not None
    assert entry["outcome"] == "queued"
    assert [e["state"] for e in entry["events"]] == ["queued", "duplicate"]


def test_job_updates_set_fields_and_add_events_but_never_revive_a_dropped_entry(
    connection,
) -> None:
    delivery = add(connection, 1)
    identifier = history.entry_id("1", delivery)
    history.update(connection, identifier, "started", {"job_state": "started"}, job="j1")
    history.update(
        connection, identifier, "processed", {"job_state": "processed", "seconds_fetch": 0.5}
    )
    entry = history.get(connection, identifier)
    assert entry is not None
    assert entry["job_state"] == "processed"
    assert entry["seconds_fetch"] == 0.5
    assert [e["state"] for e in entry["events"]] == ["queued", "started", "processed"]
    assert entry["events"][1]["job"] == "j1"
    gone = history.entry_id("1", "never-recorded")
    history.update(connection, gone, "started", {"job_state": "started"})
    assert not connection.exists(redis_keys.history_entry(gone))


def test_events_of_one_entry_are_capped(connection) -> None:
    identifier = history.entry_id("1", add(connection, 1))
    for n in range(history.EVENTS_LIMIT + 20):
        history.update(connection, identifier, "retried", n=n)
    events = history.get(connection, identifier)["events"]
    assert len(events) == history.EVENTS_LIMIT
    assert events[-1]["n"] == history.EVENTS_LIMIT + 19


def test_filters_take_a_delivery_outcome_or_a_job_state(connection) -> None:
    failed = add(connection, 1)
    history.update(connection, history.entry_id("1", failed), "failed", {"job_state": "failed"})
    ignored = add(connection, 2, outcome="ignored", event="ping", repository="o/x")
    assert [e["delivery"] for e in history.recent(connection, 10, outcome="failed")] == [failed]
    assert [e["delivery"] for e in history.recent(connection, 10, outcome="ignored")] == [ignored]
    assert [e["delivery"] for e in history.recent(connection, 10, event_name="ping")] == [ignored]
    assert [e["delivery"] for e in history.recent(connection, 10, repository="o/r")] == [failed]
    assert history.recent(connection, 10, since=1001.5, outcome="queued") == []


def test_refusals_have_their_own_capped_list_and_are_counted(connection) -> None:
    field = metrics.counter_field("ghapp_webhooks_total", event="-", outcome="refused")
    before = int(connection.hget(redis_keys.METRICS_COUNTERS, field) or 0)
    for n in range(history.REFUSED_LIMIT + 10):
        history.refused(
            connection, status=401, reason=f"bad {n}", delivery=None, event_name=None, counter=field
        )
    assert connection.llen(redis_keys.HISTORY_REFUSED) == history.REFUSED_LIMIT
    newest = history.refusals(connection, 1)[0]
    assert (newest["status"], newest["reason"], newest["outcome"]) == (
        401,
        f"bad {history.REFUSED_LIMIT + 9}",
        "refused",
    )
    assert int(connection.hget(redis_keys.METRICS_COUNTERS, field)) == before + 1010
    assert history.recent(connection, 5, outcome="refused")[0]["reason"] == newest["reason"]


def test_a_delivery_is_found_by_its_id_alone(connection) -> None:
    delivery = add(connection, 1)
    (entry,) = history.find(connection, delivery)
    assert entry["delivery"] == delivery
    assert history.find(connection, "nothing-like-it") == []


def test_an_event_is_json_with_its_time() -> None:
    assert json.loads(history.event("started", at=12.3456, job="j")) == {
        "at": 12.346,
        "state": "started",
        "job": "j",
    }
