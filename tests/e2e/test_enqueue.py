"""The enqueue on real Redis: the job hash is the one RQ writes, the payload is kept exactly as
long as its job needs it, and the round trip survives a restarted Redis or a dropped connection."""

from __future__ import annotations

import dataclasses
import pickle
import uuid
import zlib
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus

from ghapp.core import redis_keys
from ghapp.core.push_job import FUNCTION as PUSH_JOB
from ghapp.core.queueing import RETRY_INTERVALS, hard_timeout, retry_policy
from ghapp.embedded_redis import EmbeddedRedis
from tests.support import push_job
from webapp.accept import PushQueue, UnknownJobFormat
from webapp.deliveries import ZERO_SHA
from webapp.errors import answer_for

APP = "1"


def test_the_job_hash_is_the_one_rq_writes_and_rq_reads_it_back(own_redis_url: str):
    connection = redis.Redis.from_url(own_redis_url)
    # A queue name that would break out of a Lua string if it were not escaped.
    queue = Queue('q"]]\\\n--', connection=connection)
    pushes = PushQueue(queue, job_timeout=60, result_ttl=7 * 86400, failure_ttl=30 * 86400)
    change = push_job()
    job_id = pushes.enqueue(change, b'{"ref": "refs/heads/main"}', app=APP)
    assert job_id is not None
    kwargs = dataclasses.replace(
        change, payload_key=redis_keys.payload(APP, change.delivery)
    ).to_kwargs()

    ours = connection.hgetall(Job.key_for(job_id))
    reference = queue.create_job(
        PUSH_JOB,
        kwargs=kwargs,
        timeout=hard_timeout(60),
        description=f"push {change.repository} {change.ref} {change.sha[:12]}",
        meta={"delivery": change.delivery, "app": APP},
        retry=retry_policy(),
        status=JobStatus.QUEUED,
        result_ttl=7 * 86400,
        failure_ttl=30 * 86400,
    )
    reference.enqueued_at = reference.created_at
    reference.save()  # what RQ itself writes for this job
    expected = {
        name: value for name, value in connection.hgetall(reference.key).items() if value != b""
    }
    assert set(ours) == set(expected)
    for name in set(ours) - {b"created_at", b"enqueued_at", b"data", b"meta"}:
        assert ours[name] == expected[name], name
    assert pickle.loads(ours[b"data"]) == pickle.loads(zlib.decompress(expected[b"data"]))

    job = Job.fetch(job_id, connection=connection)
    assert job.func_name == PUSH_JOB
    assert job.args == [] or job.args == ()
    assert job.kwargs == kwargs
    assert job.meta == {"delivery": change.delivery, "app": APP}
    # RESULT_TTL and FAILURE_TTL: kept a week, failures a month.
    assert (job.result_ttl, job.failure_ttl) == (7 * 86400, 30 * 86400)
    assert job.timeout == hard_timeout(60)
    assert job.retries_left == len(RETRY_INTERVALS)
    assert job.retry_intervals == list(RETRY_INTERVALS)
    assert job.origin == queue.name
    assert job.get_status() == JobStatus.QUEUED
    assert job.enqueued_at is not None
    assert job.created_at is not None
    assert queue.job_ids == [job_id]
    assert queue.name in [q.name for q in Queue.all(connection=connection)]


def test_the_payload_lives_as_long_as_its_job_and_a_duplicate_leaves_none(own_redis_url: str):
    connection = redis.Redis.from_url(own_redis_url)
    pushes = PushQueue(Queue("ghapp", connection=connection), job_timeout=60)
    change = push_job()
    payload_key = redis_keys.payload(APP, change.delivery)
    assert pushes.enqueue(change, b'{"first": true}', app=APP)
    assert connection.get(payload_key) == b'{"first": true}'
    assert connection.ttl(payload_key) > redis_keys.PAYLOAD_TTL - 60

    # A redelivery while the job waits: refused, and the waiting job's payload is untouched.
    assert pushes.enqueue(change, b'{"second": true}', app=APP) is None
    assert connection.get(payload_key) == b'{"first": true}'
    assert connection.ttl(payload_key) > redis_keys.PAYLOAD_TTL - 60

    # A redelivery after the job ran (the worker deleted the payload): what it stored goes.
    connection.delete(payload_key)
    assert pushes.enqueue(change, b'{"third": true}', app=APP) is None
    assert not connection.exists(payload_key)
    assert connection.llen(Queue("ghapp", connection=connection).key) == 1


def test_the_same_push_under_another_delivery_id_is_a_duplicate(own_redis_url: str):
    connection = redis.Redis.from_url(own_redis_url)
    queue = Queue("ghapp", connection=connection)
    pushes = PushQueue(queue, job_timeout=60)
    change = push_job()
    assert pushes.enqueue(change, b"{}", app=APP)
    push_key = redis_keys.push(APP, change.repository_id, change.ref, change.before, change.sha)
    assert connection.ttl(push_key) > redis_keys.LEDGER_TTL - 60

    # A signed body replayed with a made-up X-GitHub-Delivery: refused, nothing kept.
    replay = dataclasses.replace(change, delivery=str(uuid.uuid4()))
    assert pushes.enqueue(replay, b"{}", app=APP) is None
    assert not connection.exists(redis_keys.payload(APP, replay.delivery))
    assert not connection.exists(redis_keys.delivery(APP, replay.delivery))
    assert queue.count == 1
    # Its own id is not burnt: were it GitHub's, a redelivery of it is refused the same way.
    assert pushes.enqueue(replay, b"{}", app=APP) is None

    # Another push of the same commit is not a duplicate: another branch, another starting
    # commit, another repository, another App.
    others = [
        dataclasses.replace(change, ref="refs/heads/other"),
        dataclasses.replace(change, before="1" * 40),
        dataclasses.replace(change, repository_id=43),
    ]
    for other in others:
        assert pushes.enqueue(
            dataclasses.replace(other, delivery=str(uuid.uuid4())), b"{}", app=APP
        )
    assert pushes.enqueue(replay, b"{}", app="2")
    assert queue.count == 5


def test_a_boolean_or_huge_pushed_at_is_stored_as_a_number(own_redis_url: str):
    connection = redis.Redis.from_url(own_redis_url)
    pushes = PushQueue(Queue("ghapp", connection=connection), job_timeout=60)
    # bool is an int in Python: "True" once reached the script, which failed comparing nil.
    assert pushes.enqueue(push_job(pushed_at=True), b"{}", app=APP)
    assert connection.get(redis_keys.latest_push(42, "refs/heads/main")).startswith(b"1 ")


def test_the_script_is_loaded_again_when_redis_no_longer_has_it(own_redis_url: str):
    connection = redis.Redis.from_url(own_redis_url)
    # Each queue name makes a script of its own, one this Redis has never seen: as after a
    # restart that lost the script cache.
    queue = Queue(f"fresh-{uuid.uuid4().hex}", connection=connection)
    pushes = PushQueue(queue, job_timeout=60)
    assert connection.script_exists(pushes.script.sha) == [False]
    job_id = pushes.enqueue(push_job(), b"{}", app=APP)
    assert job_id is not None
    assert connection.script_exists(pushes.script.sha) == [True]
    assert queue.job_ids == [job_id]


def test_a_connection_redis_dropped_is_opened_again(own_redis_url: str):
    connection = redis.Redis.from_url(own_redis_url)
    pushes = PushQueue(Queue("ghapp", connection=connection), job_timeout=60)
    assert pushes.enqueue(push_job(), b"{}", app=APP)
    pooled = connection.client_id()  # the one connection the enqueue will reuse
    redis.Redis.from_url(own_redis_url).client_kill_filter(_id=pooled)
    change = push_job()
    job_id = pushes.enqueue(change, b"{}", app=APP)
    assert job_id is not None
    assert connection.get(redis_keys.payload(APP, change.delivery)) == b"{}"
    assert connection.client_id() != pooled


def test_a_delivery_redis_refuses_to_store_leaves_no_record_job_or_payload(tmp_path: Path):
    server = EmbeddedRedis(tmp_path / "redis")  # its own: maxmemory is server-wide
    connection = redis.Redis.from_url(server.start())
    try:
        queue = Queue("ghapp", connection=connection)
        pushes = PushQueue(queue, job_timeout=60)
        connection.config_set("maxmemory", 1)  # every write refused: out of memory
        change = push_job()
        with pytest.raises(redis.ResponseError) as refused:
            pushes.enqueue(change, b"{}", app=APP)
        assert answer_for(refused.value).status == 503
        assert connection.dbsize() == 0
        connection.config_set("maxmemory", 0)
        assert pushes.enqueue(change, b"{}", app=APP)  # GitHub's redelivery is accepted
        assert queue.count == 1
    finally:
        server.stop()


def test_the_script_accepts_no_delivery_whose_payload_is_missing(own_redis_url: str):
    connection = redis.Redis.from_url(own_redis_url)
    queue = Queue("ghapp", connection=connection)
    pushes = PushQueue(queue, job_timeout=60)
    change = push_job()
    # As if the payload's SET had failed and the script still ran.
    ledger = redis_keys.delivery(APP, change.delivery)
    payload = redis_keys.payload(APP, change.delivery)
    with pytest.raises(redis.ResponseError, match="payload was not stored"):
        pushes.script(
            keys=[ledger, payload, "latest", "push", "job", queue.key, "queues"],
            args=["j", "1", ZERO_SHA, "a" * 40, "d", "9" * 10, "t", "", "", ""],
        )
    assert connection.dbsize() == 0


def test_an_rq_writing_job_fields_ghapp_does_not_know_is_refused_at_start(
    own_redis_url: str, monkeypatch: pytest.MonkeyPatch
):
    queue = Queue("ghapp", connection=redis.Redis.from_url(own_redis_url))
    PushQueue(queue, job_timeout=60)  # the installed RQ: known
    to_dict = Job.to_dict
    monkeypatch.setattr(Job, "to_dict", lambda job, **kw: {**to_dict(job, **kw), "lease": "1"})
    with pytest.raises(UnknownJobFormat, match=r"\(lease\).*requirements\.lock"):
        PushQueue(queue, job_timeout=60)


def test_the_embedded_redis_refuses_writes_when_full_rather_than_evict_queued_work(
    tmp_path: Path,
):
    server = EmbeddedRedis(tmp_path / "redis", maxmemory_mb=64)
    try:
        connection = redis.Redis.from_url(server.start())
        config = connection.config_get("maxmemory*")
        assert config["maxmemory-policy"] == "noeviction"
        assert int(config["maxmemory"]) == 64 * 1024 * 1024
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(unix_socket_path=server.socket_path).ping()  # a password is required
    finally:
        server.stop()
