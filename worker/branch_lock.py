"""One job at a time per repository branch, and older waiting pushes superseded by the newest.

The lock lives in Redis with a short expiry that a thread keeps extending while the job runs,
so the lock of a killed worker frees itself within ``LOCK_TTL`` seconds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.exceptions import LockError

from ghapp import keys

from .failures import Transient

log = logging.getLogger("ghapp.worker.branch_lock")

LOCK_TTL = 20
EXTEND_EVERY = 5


def superseded_by(
    connection: redis.Redis, repository_id: int, ref: str, delivery: str
) -> str | None:
    """The delivery of a newer push to the same branch, if one was accepted after ours."""
    latest = connection.get(keys.latest_push(repository_id, ref))
    if latest is None:
        return None
    latest_delivery = latest.decode().rpartition(" ")[2]  # "<pushed_at> <delivery>"
    return None if latest_delivery == delivery else latest_delivery


@contextmanager
def branch_lock(
    connection: redis.Redis, repository_id: int, ref: str, *, wait: float
) -> Iterator[None]:
    """Hold the branch's lock for the block; raise Transient if not had within ``wait`` s."""
    lock = connection.lock(
        keys.branch_lock(repository_id, ref),
        timeout=LOCK_TTL,
        blocking_timeout=wait,
        thread_local=False,
    )
    if not lock.acquire():
        raise Transient(f"another job held the lock of {ref} for {wait:.0f} s; trying later")
    stop = threading.Event()

    def keep_alive() -> None:
        while not stop.wait(EXTEND_EVERY):
            try:
                lock.reacquire()
            except (LockError, redis.RedisError) as exc:
                log.warning(
                    "lost the lock of %s (%s): another job of the branch may start",
                    ref,
                    type(exc).__name__,
                )
                return

    keeper = threading.Thread(target=keep_alive, daemon=True, name="branch-lock")
    keeper.start()
    try:
        yield
    finally:
        stop.set()
        keeper.join()
        try:
            lock.release()
        except (LockError, redis.RedisError):
            pass  # expired or Redis gone: it frees itself
