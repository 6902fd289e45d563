"""Which push of a branch is the newest: the commit chain where pushes link, GitHub's push time
otherwise, never the order deliveries arrive in (a redelivery of an older push can arrive last),
and never a number an attacker chose over the facts."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from rq import Queue

from ghapp.core import redis_keys
from tests.e2e.conftest import Stack
from tests.support import failure_text, push_job, wait_job
from webapp.accept import MAX_TIED, PushQueue
from webapp.deliveries import MAX_CLOCK_SKEW, ZERO_SHA, PushJob
from worker.branch_lock import superseded_by

REF = "refs/heads/main"
T = 1_700_000_000


@pytest.fixture
def connection(own_redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(own_redis_url)


@pytest.fixture
def pushes(connection: redis.Redis) -> PushQueue:
    return PushQueue(Queue("ghapp", connection=connection), job_timeout=60)


def sha() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex[:8]


def push(pushed_at: int, before: str = ZERO_SHA, after: str | None = None) -> PushJob:
    return dataclasses.replace(push_job(pushed_at), before=before, sha=after or sha())


def chain(*times: int) -> Iterator[PushJob]:
    """Pushes that each move the branch on from the previous one's commit."""
    before = sha()
    for pushed_at in times:
        job = push(pushed_at, before=before)
        before = job.sha
        yield job


def newer(connection: redis.Redis, job: PushJob) -> str | None:
    return superseded_by(connection, job.repository_id, job.ref, job.delivery)


def accept(pushes: PushQueue, *jobs: PushJob) -> None:
    for job in jobs:
        assert pushes.enqueue(job, b"{}", app="1"), job


def test_a_late_redelivery_of_an_older_push_does_not_supersede_the_newer_one(
    connection: redis.Redis, pushes: PushQueue
):
    newer_push, older, newest = (push(t) for t in (T + 200, T + 100, T + 300))
    accept(pushes, newer_push, older)  # the older arrives after the newer push
    assert newer(connection, newer_push) is None
    assert newer(connection, older) == newer_push.delivery
    accept(pushes, newest)
    assert newer(connection, newer_push) == newest.delivery
    assert newer(connection, newest) is None


def test_a_push_that_follows_another_is_newer_whatever_its_pushed_at(
    connection: redis.Redis, pushes: PushQueue
):
    first, second = chain(T + 500, T)  # the second dated earlier: a clock, not the facts
    accept(pushes, first, second)
    assert newer(connection, first) == second.delivery
    assert newer(connection, second) is None
    # A late redelivery of the first dated later still does not take the second's place.
    again = dataclasses.replace(first, delivery=str(uuid.uuid4()), before=sha())
    accept(pushes, again)
    assert newer(connection, again) == second.delivery


def test_a_push_whose_commit_the_newest_started_from_is_older_whatever_its_pushed_at(
    connection: redis.Redis, pushes: PushQueue
):
    first, second = chain(T + 500, T)
    accept(pushes, second, first)  # the newer arrives first; the older dated later
    assert newer(connection, first) == second.delivery
    assert newer(connection, second) is None


def test_pushes_at_the_same_time_that_do_not_link_supersede_neither_other(
    connection: redis.Redis, pushes: PushQueue
):
    older, b, a = push(T - 10), push(T), push(T)
    accept(pushes, older, b, a)  # b, arriving first, may well be the newer: both are processed
    assert newer(connection, a) is None
    assert newer(connection, b) is None
    assert newer(connection, older) in (a.delivery, b.delivery)
    # Until a push strictly newer comes.
    newest = push(T + 1)
    accept(pushes, newest)
    assert [newer(connection, job) for job in (older, a, b)] == [newest.delivery] * 3
    assert newer(connection, newest) is None


def test_a_tied_push_followed_by_another_is_newest_no_more(
    connection: redis.Redis, pushes: PushQueue
):
    a, b = push(T), push(T)
    follower = push(T, before=a.sha)
    accept(pushes, a, b, follower)
    assert newer(connection, a) in (b.delivery, follower.delivery)
    assert newer(connection, b) is None
    assert newer(connection, follower) is None


def test_pushes_tied_past_counting_are_all_processed_until_a_newer_one(
    connection: redis.Redis, pushes: PushQueue
):
    tied = [push(T) for _ in range(MAX_TIED + 3)]
    accept(pushes, *tied)
    assert [newer(connection, job) for job in tied] == [None] * len(tied)
    assert connection.get(redis_keys.latest_push(42, REF)) == f"{T} *".encode()
    accept(pushes, push(T - 1))  # older: changes nothing
    assert [newer(connection, job) for job in tied] == [None] * len(tied)
    newest = push(T + 1)
    accept(pushes, newest)
    assert {newer(connection, job) for job in tied} == {newest.delivery}


@pytest.mark.parametrize(
    "stored",
    [
        b"garbage",
        b"",
        b"1700000000",  # no delivery
        b"1700000000 \xff\xfe",
        b"1700000000 a:b:c:d",
        b"-5 x",
        b"99999999999999999999999 x",  # more digits than a double holds
        f"{int(time.time()) + MAX_CLOCK_SKEW + 3600} {ZERO_SHA}:{'a' * 40}:x".encode(),
        "1700000000 \u2028".encode(),
    ],
)
def test_whatever_is_stored_the_new_push_is_accepted_and_newest(
    connection: redis.Redis, pushes: PushQueue, stored: bytes
):
    connection.set(redis_keys.latest_push(42, REF), stored)
    job = push(int(time.time()))
    accept(pushes, job)
    assert newer(connection, job) is None
    assert newer(connection, push(T)) == job.delivery


@pytest.mark.parametrize("kind", ["hash", "list", "set", "zset", "stream"])
def test_a_newest_push_key_of_another_type_is_replaced(
    connection: redis.Redis, pushes: PushQueue, kind: str
):
    key = redis_keys.latest_push(42, REF)
    {
        "hash": lambda: connection.hset(key, "a", "b"),
        "list": lambda: connection.rpush(key, "a"),
        "set": lambda: connection.sadd(key, "a"),
        "zset": lambda: connection.zadd(key, {"a": 1}),
        "stream": lambda: connection.xadd(key, {"a": "b"}),
    }[kind]()
    waiting = push(T)
    assert newer(connection, waiting) is None  # unreadable: processing is the safe side
    job = push(T)
    accept(pushes, job)
    assert newer(connection, job) is None
    assert newer(connection, waiting) == job.delivery


def test_the_previous_format_is_read_and_ordered_by_time(
    connection: redis.Redis, pushes: PushQueue
):
    waiting = str(uuid.uuid4())  # a job queued by the version before: "<pushed_at> <delivery>"
    connection.set(redis_keys.latest_push(42, REF), f"{T} {waiting}")
    assert superseded_by(connection, 42, REF, waiting) is None
    late = push(T - 1)
    accept(pushes, late)
    assert newer(connection, late) == waiting
    newest = push(T + 1)
    accept(pushes, newest)
    assert superseded_by(connection, 42, REF, waiting) == newest.delivery


def test_a_body_replayed_under_a_new_delivery_id_is_a_duplicate(stack: Stack, fresh_repo_name):
    repo = stack.repository(fresh_repo_name)
    payload = stack.simulator.push_payload(
        repo.full_name, before=None, after=stack.simulator.branch_tip(repo.full_name)
    )
    body = json.dumps(payload).encode()
    first = stack.post(body)
    assert first.status_code == 202, first.text
    # The signature covers the body, not X-GitHub-Delivery: anyone who saw one delivery could
    # otherwise have it processed again and again.
    replays = [stack.post(body, delivery=str(uuid.uuid4())) for _ in range(3)]
    assert [(a.status_code, a.json()["status"]) for a in replays] == [(200, "duplicate")] * 3
    job = wait_job(stack.redis, first.json()["job_id"])
    assert job.get_status() == "finished", failure_text(job)
    assert stack.post(body, delivery=str(uuid.uuid4())).json()["status"] == "duplicate"
    # The next push of the branch is a push of its own.
    sha = stack.simulator.commit(repo.full_name, files={"b.txt": "2\n"}, message="two")
    following = stack.simulator.push_payload(repo.full_name, before=payload["after"], after=sha)
    answer = stack.post(following)
    assert answer.status_code == 202, answer.text
    assert wait_job(stack.redis, answer.json()["job_id"]).return_value()["status"] == "processed"
