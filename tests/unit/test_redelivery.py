"""Which of GitHub's webhook deliveries were lost and are asked for again, read from plain dicts
shaped as ``GET /app/hook/deliveries`` returns them (newest first); the pages walked, and the
next run scheduled once per slot. No Redis, no GitHub."""

from __future__ import annotations

import itertools
import types
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from rq.exceptions import DuplicateJobError

from worker import redelivery
from worker.redelivery import (
    MAX_PAGES,
    OVERLAP,
    PER_PAGE,
    REDELIVERY_JOB,
    delivered_at,
    failed_deliveries,
    schedule_next,
)

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC).timestamp()
_ids = itertools.count(1000)


def attempt(
    guid: str,
    at: float,
    *,
    status_code: int = 200,
    status: str | None = None,
    redelivery: bool = False,
    event: str = "push",
) -> dict[str, Any]:
    """One attempt as GitHub lists it; ``at`` in seconds after T0."""
    if status is None:
        status = "OK" if 200 <= status_code < 300 else f"Invalid HTTP Response: {status_code}"
    return {
        "id": next(_ids),
        "guid": guid,
        "delivered_at": datetime.fromtimestamp(T0 + at, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "redelivery": redelivery,
        "duration": 0.27,
        "status": status,
        "status_code": status_code,
        "event": event,
        "action": None,
        "installation_id": 7,
        "repository_id": 42,
        "throttled_at": None,
    }


def guids(items: list[dict[str, Any]]) -> list[str]:
    return [item["guid"] for item in items]


# --- delivered_at --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2024-03-01T12:00:00Z", T0),
        ("2024-03-01T12:00:00.250Z", T0 + 0.25),
        ("2024-03-01T13:00:00+01:00", T0),
        ("2024-03-01T12:00:00+00:00", T0),
    ],
)
def test_delivered_at_reads_githubs_timestamps_as_utc(stamp, expected):
    assert delivered_at({"delivered_at": stamp}) == expected


# --- failed_deliveries ---------------------------------------------------------------------


def test_a_delivery_answered_ok_is_not_asked_again():
    assert failed_deliveries([attempt("a", 10)], T0) == []


@pytest.mark.parametrize(
    ("status_code", "status"),
    [
        (200, "OK"),
        (202, "OK"),  # what ghapp answers
        (204, "OK"),
        (202, "Accepted"),  # a 2xx is a success whatever the text
        (0, "OK"),  # and "OK" whatever the code
    ],
)
def test_success_is_an_ok_status_or_a_2xx_code(status_code, status):
    assert failed_deliveries([attempt("a", 10, status_code=status_code, status=status)], T0) == []


@pytest.mark.parametrize(
    ("status_code", "status"),
    [
        (502, None),
        (503, None),
        (500, None),
        (404, None),
        (401, None),  # the webhook secret did not match
        (300, None),  # a redirect is not followed: a failure
        (301, "Invalid HTTP Response: 301"),
        (0, "failed to connect to host"),
        (0, "timed out"),
        (0, ""),
    ],
)
def test_a_delivery_whose_only_attempt_failed_is_asked_again(status_code, status):
    lost = attempt("a", 10, status_code=status_code, status=status)
    assert failed_deliveries([lost], T0) == [lost]


def test_a_status_code_missing_or_not_a_number_is_no_success():
    items = [
        {**attempt("a", 10, status="failed to connect to host"), "status_code": None},
        {**attempt("b", 11, status="timed out"), "status_code": "200"},
    ]
    del items[0]["status_code"]
    assert guids(failed_deliveries(items, T0)) == ["a", "b"]


def test_a_delivery_whose_redelivery_succeeded_is_not_asked_again():
    items = [
        attempt("a", 100, redelivery=True),  # newest first, as GitHub lists them
        attempt("a", 10, status_code=502),
    ]
    assert failed_deliveries(items, T0) == []


def test_a_success_before_a_failed_redelivery_still_counts():
    items = [attempt("a", 100, status_code=502, redelivery=True), attempt("a", 10)]
    assert failed_deliveries(items, T0) == []


def test_a_delivery_whose_every_attempt_failed_is_named_once_by_its_newest_attempt():
    first = attempt("a", 10, status_code=502)
    second = attempt("a", 100, status_code=503, redelivery=True)
    third = attempt("a", 50, status_code=0, status="timed out", redelivery=True)
    assert failed_deliveries([third, second, first], T0) == [second]


def test_failed_deliveries_come_oldest_first_by_the_attempt_named():
    items = [
        attempt("d", 40, status_code=502),
        attempt("c", 30),
        attempt("b", 20, status_code=500, redelivery=True),
        attempt("a", 10, status_code=0, status="failed to connect to host"),
        attempt("b", 5, status_code=500),
    ]
    assert guids(failed_deliveries(items, T0)) == ["a", "b", "d"]


def test_only_deliveries_first_attempted_since_the_cursor_are_asked_again():
    items = [
        attempt("new", 1, status_code=502),
        attempt("on-the-cursor", 0, status_code=502),
        attempt("old", -1, status_code=502),
        # First failed before the cursor (an earlier run asked for it), failed again since:
        # not asked again, or a delivery that always fails would be asked for every run.
        attempt("asked-before", 30, status_code=502, redelivery=True),
        attempt("asked-before", -300, status_code=502),
    ]
    assert guids(failed_deliveries(items, T0)) == ["on-the-cursor", "new"]


def test_a_delivery_recorded_late_within_the_overlap_is_still_found():
    cursor = T0
    late = attempt("late", -OVERLAP / 2, status_code=502)  # GitHub wrote it after the last run
    too_old = attempt("too-old", -OVERLAP - 1, status_code=502)
    assert failed_deliveries([late, too_old], cursor - OVERLAP) == [late]


def test_deliveries_are_told_apart_by_guid_not_by_id():
    items = [attempt("a", 10, status_code=502), attempt("b", 10, status_code=502)]
    items[1]["id"] = items[0]["id"]
    assert guids(failed_deliveries(items, T0)) == ["a", "b"]


def test_items_are_read_once_from_any_iterable():
    def pages() -> Iterator[dict[str, Any]]:
        yield attempt("a", 10, status_code=502)
        yield attempt("b", 20)

    assert guids(failed_deliveries(pages(), T0)) == ["a"]


def test_nothing_listed_nothing_asked():
    assert failed_deliveries([], T0) == []


# --- _pages: the listing, newest first, until older than ``since`` -------------------------


class FakeAPI:
    """``GET /app/hook/deliveries`` in pages of two; ``next`` links like GitHub's cursors."""

    def __init__(self, items: list[dict[str, Any]], *, endless: bool = False) -> None:
        self.items = items
        self.endless = endless
        self.calls: list[tuple[str, str, str]] = []

    def request(self, method: str, url: str, bearer: str) -> Any:
        self.calls.append((method, url, bearer))
        page = len(self.calls) - 1
        chunk = self.items[page * 2 : page * 2 + 2]
        if self.endless:
            chunk = [attempt(f"p{page}", 10_000 - page)]
        more = self.endless or page * 2 + 2 < len(self.items)
        links = {"next": {"url": f"/app/hook/deliveries?cursor={page + 1}"}} if more else {}
        return types.SimpleNamespace(json=lambda: chunk, links=links)


class AsApp:
    def __init__(self) -> None:
        self.calls = 0

    def call_as_app(self, call: Callable[[str], Any]) -> Any:
        self.calls += 1
        return call("app-jwt")


def pages(items: list[dict[str, Any]], since: float, **kwargs: Any) -> tuple[list, FakeAPI]:
    api = FakeAPI(items, **kwargs)
    rt = types.SimpleNamespace(api=api)
    listed = list(redelivery._pages(rt, AsApp(), since))  # type: ignore[arg-type]
    return listed, api


def test_pages_are_read_as_the_app_until_one_ends_before_since():
    items = [attempt(g, at) for g, at in [("f", 50), ("e", 40), ("d", 30), ("c", -1), ("b", -2)]]
    items.append(attempt("a", -3))
    listed, api = pages(items, T0)
    # The page holding the first item older than ``since`` is the last one read.
    assert guids(listed) == ["f", "e", "d", "c"]
    assert [url for _, url, _ in api.calls] == [
        f"/app/hook/deliveries?per_page={PER_PAGE}",
        "/app/hook/deliveries?cursor=1",
    ]
    assert {(method, bearer) for method, _, bearer in api.calls} == {("GET", "app-jwt")}


def test_pages_stop_when_github_has_no_next_page():
    items = [attempt(g, at) for g, at in [("c", 30), ("b", 20), ("a", 10)]]
    listed, api = pages(items, T0)
    assert guids(listed) == ["c", "b", "a"]
    assert len(api.calls) == 2


def test_pages_stop_at_an_empty_page():
    listed, api = pages([], T0)
    assert (listed, len(api.calls)) == ([], 1)


def test_pages_stop_after_max_pages_however_many_github_has():
    listed, api = pages([], T0, endless=True)
    assert len(api.calls) == MAX_PAGES
    assert len(listed) == MAX_PAGES


# --- schedule_next -------------------------------------------------------------------------


class FakeQueue:
    def __init__(self, refuse: Exception | None = None) -> None:
        self.refuse = refuse
        self.scheduled: list[tuple[datetime, str, dict[str, Any]]] = []

    def enqueue_at(self, when: datetime, function: str, **kwargs: Any) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.scheduled.append((when, function, kwargs))


def test_the_next_run_is_at_the_next_multiple_of_the_interval():
    queue = FakeQueue()
    schedule_next(queue, 300, now=1_000_000_123.0)  # type: ignore[arg-type]
    ((when, function, kwargs),) = queue.scheduled
    assert when == datetime.fromtimestamp(1_000_000_200, tz=UTC)
    assert when.tzinfo is not None
    assert function == REDELIVERY_JOB
    assert kwargs["job_id"] == f"ghapp-redelivery-300-{1_000_000_200 // 300}"
    assert kwargs["unique"] is True
    assert kwargs["job_timeout"] >= 60


def test_a_run_on_a_slot_boundary_schedules_the_following_slot_not_itself():
    queue = FakeQueue()
    schedule_next(queue, 300, now=1_000_000_200.0)  # type: ignore[arg-type]
    assert queue.scheduled[0][0] == datetime.fromtimestamp(1_000_000_500, tz=UTC)


def test_workers_asking_within_one_slot_name_the_same_job():
    queue = FakeQueue()
    for now in (1_000_000_123.0, 1_000_000_150.5, 1_000_000_199.9):
        schedule_next(queue, 300, now=now)  # type: ignore[arg-type]
    assert len({kwargs["job_id"] for _, _, kwargs in queue.scheduled}) == 1


def test_a_slot_already_scheduled_is_not_an_error():
    schedule_next(FakeQueue(refuse=DuplicateJobError("taken")), 300, now=0.0)  # type: ignore[arg-type]


def test_other_scheduling_failures_are_raised():
    queue = FakeQueue(refuse=ConnectionError("redis down"))
    with pytest.raises(ConnectionError):
        schedule_next(queue, 300, now=0.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("interval", [0, -60])
def test_an_interval_of_zero_or_less_turns_redelivery_off(interval):
    queue = FakeQueue()
    schedule_next(queue, interval, now=1_000_000_000.0)  # type: ignore[arg-type]
    assert queue.scheduled == []
