"""A waiting push superseded by a newer one of its branch, read from what the enqueue stores; the
branch lock's contract with Redis (acquire within the wait, keep it alive, always release),
against a fake lock. The real Redis side is in tests/e2e/test_push_order.py."""

from __future__ import annotations

import logging
import threading

import pytest
import redis
from redis.exceptions import LockError

from ghapp.core import redis_keys
from worker import branch_lock as module
from worker.branch_lock import LOCK_TTL, branch_lock, newer_than, superseded_by
from worker.failures import Transient

REF = "refs/heads/main"
A, B, C = "a" * 40, "b" * 40, "c" * 40


# --- newer_than: the stored "<pushed_at> <before>:<after>:<delivery> ..." ---------------------


@pytest.mark.parametrize(
    ("stored", "delivery", "newer"),
    [
        (f"1700000000 {A}:{B}:d2".encode(), "d2", None),  # ours is the newest
        (f"1700000000 {A}:{B}:d2".encode(), "d1", "d2"),
        # Pushes that tie are all newest: none of them is superseded, others are.
        (f"1700000000 {A}:{B}:d2 {A}:{C}:d3".encode(), "d3", None),
        (f"1700000000 {A}:{B}:d2 {A}:{C}:d3".encode(), "d2", None),
        (f"1700000000 {A}:{B}:d2 {A}:{C}:d3".encode(), "d1", "d2"),
        # Tied past listing: every one of them is processed.
        (b"1700000000 *", "d1", None),
        # The format before: "<pushed_at> <delivery>".
        (b"1700000000 d2", "d2", None),
        (b"1700000000 d2", "d1", "d2"),
    ],
)
def test_a_push_is_superseded_only_by_a_newer_one_stored(stored, delivery, newer):
    assert newer_than(stored, delivery) == newer


@pytest.mark.parametrize("stored", [None, b"", b"1700000000", b"1700000000 ", b"garbage"])
def test_nothing_readable_stored_means_process(stored):
    assert newer_than(stored, "d1") is None


def test_a_delivery_is_matched_whole_not_by_prefix():
    assert newer_than(f"1 {A}:{B}:d10".encode(), "d1") == "d10"
    assert newer_than(f"1 {A}:{B}:d1".encode(), "d10") == "d1"


# --- superseded_by -------------------------------------------------------------------------


class Stored:
    def __init__(self, value: bytes | None = None, error: Exception | None = None) -> None:
        self.value = value
        self.error = error
        self.keys: list[str] = []

    def get(self, key: str) -> bytes | None:
        self.keys.append(key)
        if self.error is not None:
            raise self.error
        return self.value


def test_superseded_by_reads_the_branchs_newest_push():
    connection = Stored(f"1700000000 {A}:{B}:d2".encode())
    assert superseded_by(connection, 42, REF, "d1") == "d2"  # type: ignore[arg-type]
    assert connection.keys == [redis_keys.latest_push(42, REF)]


def test_a_key_of_another_type_is_not_ours_and_means_process():
    error = redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind")
    assert superseded_by(Stored(error=error), 42, REF, "d1") is None  # type: ignore[arg-type]


def test_redis_unreachable_is_not_taken_for_process():
    connection = Stored(error=redis.ConnectionError("Connection refused"))
    with pytest.raises(redis.ConnectionError):  # the job fails and RQ tries it again
        superseded_by(connection, 42, REF, "d1")  # type: ignore[arg-type]


# --- branch_lock against a fake lock -------------------------------------------------------


class FakeLock:
    def __init__(self, *, acquired: bool = True, release_error: Exception | None = None) -> None:
        self.acquired = acquired
        self.release_error = release_error
        self.reacquire_error: Exception | None = None
        self.released = False
        self.reacquired = threading.Event()

    def acquire(self) -> bool:
        return self.acquired

    def reacquire(self) -> bool:
        self.reacquired.set()
        if self.reacquire_error is not None:
            raise self.reacquire_error
        return True

    def release(self) -> None:
        self.released = True
        if self.release_error is not None:
            raise self.release_error


class Locks:
    def __init__(self, lock: FakeLock) -> None:
        self.lock_ = lock
        self.made: list[tuple[str, dict[str, object]]] = []

    def lock(self, name: str, **kwargs: object) -> FakeLock:
        self.made.append((name, kwargs))
        return self.lock_


def test_the_lock_is_the_branchs_with_a_short_expiry_shared_across_threads():
    connection = Locks(FakeLock())
    with branch_lock(connection, 42, REF, wait=30):  # type: ignore[arg-type]
        pass
    ((name, kwargs),) = connection.made
    assert name == redis_keys.branch_lock(42, REF)
    # A short TTL (a killed worker's lock frees itself), the job's wait, and no thread-local
    # token: the keep-alive thread extends what the job's thread acquired.
    assert kwargs == {"timeout": LOCK_TTL, "blocking_timeout": 30, "thread_local": False}


def test_a_lock_not_had_within_the_wait_is_transient_and_names_the_branch():
    lock = FakeLock(acquired=False)
    ran = False
    held = branch_lock(Locks(lock), 42, REF, wait=30)  # type: ignore[arg-type]
    with pytest.raises(Transient, match=r"refs/heads/main for 30 s"), held:
        ran = True
    assert not ran
    assert not lock.released


def test_the_lock_is_released_when_the_job_fails():
    lock = FakeLock()
    held = branch_lock(Locks(lock), 42, REF, wait=30)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="the job's own"), held:
        raise ValueError("the job's own failure")
    assert lock.released


@pytest.mark.parametrize("error", [LockError("expired"), redis.ConnectionError("gone")])
def test_a_lock_that_cannot_be_released_frees_itself_without_failing_the_job(error):
    lock = FakeLock(release_error=error)
    with branch_lock(Locks(lock), 42, REF, wait=30):  # type: ignore[arg-type]
        pass
    assert lock.released


def test_a_lost_lock_is_logged_and_the_job_goes_on(monkeypatch, caplog):
    monkeypatch.setattr(module, "EXTEND_EVERY", 0.001)
    lock = FakeLock()
    lock.reacquire_error = LockError("Cannot reacquire a lock that's no longer owned")
    held = branch_lock(Locks(lock), 42, REF, wait=30)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="ghapp.worker.branch_lock"), held:
        assert lock.reacquired.wait(5)
    # Leaving the block joined the keeper thread: its line, if any, is logged by now.
    assert lock.released
    assert any("lost the lock of refs/heads/main" in r.getMessage() for r in caplog.records)
