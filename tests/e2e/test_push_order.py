"""Which push of a branch is the newest: GitHub's push time, not the order deliveries arrive in
(a redelivery of an older push can arrive last)."""

from __future__ import annotations

import redis
from rq import Queue

from tests.support import push_job
from webapp.accept import PushQueue
from worker.branch_lock import superseded_by


def test_a_late_redelivery_of_an_older_push_does_not_supersede_the_newer_one(
    own_redis_url: str,
):
    connection = redis.Redis.from_url(own_redis_url)
    pushes = PushQueue(Queue("ghapp", connection=connection), job_timeout=60)
    newer, older, newest = (push_job(t) for t in (1_700_000_200, 1_700_000_100, 1_700_000_300))
    assert pushes.enqueue(newer, b"{}", app="1")
    assert pushes.enqueue(older, b"{}", app="1")  # arrives after the newer push
    assert superseded_by(connection, 42, "refs/heads/main", newer.delivery) is None
    assert superseded_by(connection, 42, "refs/heads/main", older.delivery) == newer.delivery
    assert pushes.enqueue(newest, b"{}", app="1")
    assert superseded_by(connection, 42, "refs/heads/main", newer.delivery) == newest.delivery
