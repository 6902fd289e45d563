"""Webhooks lost while ghapp was down: find GitHub's failed deliveries and ask for them again.

GitHub never retries a failed delivery by itself. A job scheduled with RQ's scheduler every
REDELIVERY_INTERVAL seconds lists the App's deliveries since its last run (cursor in Redis) and
asks GitHub to redeliver, once each, those whose every attempt failed.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import LockError
from rq import Queue, get_current_job
from rq.exceptions import DuplicateJobError

from ghapp.core import metrics, redis_keys

from . import runtime

log = logging.getLogger("ghapp.worker.redelivery")

REDELIVERY_JOB = "worker.redelivery.redeliver_failed"
FIRST_LOOKBACK = 6 * 3600  # without a cursor, look this far back (GitHub keeps 3 days)
OVERLAP = 120  # seconds re-read before the cursor, for deliveries recorded late
ASKED_TTL = 4 * 24 * 3600  # longer than GitHub keeps deliveries
PER_PAGE = 100
MAX_PAGES = 50


def schedule_next(queue: Queue, interval: int, now: float | None = None) -> None:
    """Schedule the next run at the next multiple of ``interval``: one job per slot, however
    many workers ask (the job id names the slot and RQ refuses a duplicate)."""
    if interval <= 0:
        return
    slot = int((time.time() if now is None else now) // interval) + 1
    with contextlib.suppress(DuplicateJobError):
        queue.enqueue_at(
            datetime.fromtimestamp(slot * interval, tz=UTC),
            REDELIVERY_JOB,
            job_id=f"ghapp-redelivery-{interval}-{slot}",
            unique=True,
            job_timeout=max(60, interval),
            result_ttl=interval * 2 + 60,
            failure_ttl=24 * 3600,
            description="ask GitHub to redeliver failed webhook deliveries",
        )


def delivered_at(item: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(item["delivered_at"]).replace("Z", "+00:00")).timestamp()


def failed_deliveries(items: Iterable[dict[str, Any]], since: float) -> list[dict[str, Any]]:
    """The newest attempt of each delivery (guid) with no successful attempt among ``items``,
    first delivered at or after ``since``; oldest first."""
    by_guid: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_guid.setdefault(str(item["guid"]), []).append(item)
    failed = []
    for attempts in by_guid.values():
        if any(_succeeded(a) for a in attempts):
            continue
        first = min(attempts, key=delivered_at)
        if delivered_at(first) < since:
            continue
        failed.append(max(attempts, key=delivered_at))
    return sorted(failed, key=delivered_at)


def _succeeded(attempt: dict[str, Any]) -> bool:
    code = attempt.get("status_code")
    return attempt.get("status") == "OK" or (isinstance(code, int) and 200 <= code < 300)


def _pages(rt: runtime.Runtime, tokens: Any, since: float) -> Iterator[dict[str, Any]]:
    """Deliveries newest first, page by page, until they are older than ``since``."""
    url = f"/app/hook/deliveries?per_page={PER_PAGE}"
    for _ in range(MAX_PAGES):
        response: Any = tokens.call_as_app(lambda bearer, u=url: rt.api.request("GET", u, bearer))
        items = response.json()
        yield from items
        url = response.links.get("next", {}).get("url")
        if not items or not url or delivered_at(items[-1]) < since:
            return


def redeliver_failed() -> dict[str, Any]:
    """The scheduled job: ask for each failed delivery since the cursor once; move the cursor."""
    job = get_current_job()
    assert job is not None
    connection = job.connection
    rt = runtime.current()
    queue = Queue(job.origin, connection=connection)
    lock = connection.lock(redis_keys.REDELIVERY_LOCK, timeout=300, blocking_timeout=0)
    if not lock.acquire():
        return {"status": "skipped", "reason": "another run is under way"}
    try:
        started = time.time()
        raw = connection.get(redis_keys.REDELIVERY_CURSOR)
        cursor = float(raw) if raw else started - FIRST_LOOKBACK
        tokens = rt.tokens(connection)
        items = list(_pages(rt, tokens, cursor - OVERLAP))
        asked = []
        for item in failed_deliveries(items, cursor - OVERLAP):
            guid = str(item["guid"])
            if not connection.set(
                redis_keys.redelivery_asked(guid), item["id"], nx=True, ex=ASKED_TTL
            ):
                continue
            path = f"/app/hook/deliveries/{item['id']}/attempts"

            def ask(bearer: str, path: str = path) -> object:
                return rt.api.request("POST", path, bearer)

            try:
                tokens.call_as_app(ask)
            except Exception:
                connection.delete(
                    redis_keys.redelivery_asked(guid)
                )  # not asked after all: next run
                raise
            asked.append(guid)
            metrics.count_quietly(connection, "ghapp_redeliveries_requested_total")
            log.info("asked GitHub to redeliver %s (%s)", guid, item.get("event"))
        if items:
            connection.set(redis_keys.REDELIVERY_CURSOR, repr(max(delivered_at(i) for i in items)))
        elif not raw:
            connection.set(redis_keys.REDELIVERY_CURSOR, repr(started))
        return {"status": "done", "seen": len(items), "redelivered": asked}
    finally:
        schedule_next(queue, rt.settings.redelivery_interval)
        try:
            lock.release()
        except LockError:
            pass  # it expired during a long run: nothing to release
