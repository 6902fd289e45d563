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

from ghapp.core import redis_keys

from .failures import Transient

log = logging.getLogger("ghapp.worker.branch_lock")

LOCK_TTL = 20
EXTEND_EVERY = 5


def superseded_by(
    connection: redis.Redis, repository_id: int, ref: str, delivery: str
) -> str | None:
    """The delivery of a newer push to the same branch, if one was accepted after ours."""
    try:
        latest: bytes | None = connection.get(redis_keys.latest_push(repository_id, ref))  # type: ignore[assignment]
    except redis.ResponseError:  # not a string: nothing we wrote
        return None
    return newer_than(latest, delivery)


def newer_than(latest: bytes | None, delivery: str) -> str | None:
    """Of the branch's newest pushes as the enqueue stores them (``redis_keys.latest_push``), one
    newer than ``delivery``'s: None if ``delivery`` is among them, they tie past listing
    (``*``), or nothing readable is stored (processing is then the safe side)."""
    if latest is None:
        return None
    try:
        text = latest.decode()
    except UnicodeDecodeError:
        return None  # not what the enqueue writes
    _, _, rest = text.partition(" ")
    # "<before>:<after>:<delivery>", or the bare delivery of the format before it.
    newest = [token.rpartition(":")[2] for token in rest.split()]
    if not newest or "*" in newest or delivery in newest:
        return None
    return newest[0]


def newer_commit(connection: redis.Redis, repository_id: int, ref: str, newer: str) -> str | None:
    """The commit the branch's newest push of delivery ``newer`` brought, if it is still listed."""
    try:
        latest: bytes | None = connection.get(redis_keys.latest_push(repository_id, ref))  # type: ignore[assignment]
    except redis.ResponseError:
        return None
    if latest is None:
        return None
    for token in latest.decode(errors="replace").split()[1:]:
        parts = token.split(":")  # "<before>:<after>:<delivery>"
        if len(parts) == 3 and parts[2] == newer and parts[1]:
            return parts[1]
    return None


@contextmanager
def branch_lock(
    connection: redis.Redis, repository_id: int, ref: str, *, wait: float
) -> Iterator[None]:
    """Hold the branch's lock for the block; raise Transient if not had within ``wait`` s."""
    lock = connection.lock(
        redis_keys.branch_lock(repository_id, ref),
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
