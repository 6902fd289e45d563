"""How a failure is retried: a short rate limit is waited out in place, a long one reschedules."""

from __future__ import annotations

import pytest

from worker.failures import SHORT_WAIT, Permanent, RateLimited, Transient, waits_in_place


@pytest.mark.parametrize(("wait", "in_place"), [(0, True), (SHORT_WAIT, True), (11, False)])
def test_a_short_rate_limit_is_waited_out_a_long_one_reschedules(wait, in_place) -> None:
    assert waits_in_place(RateLimited("slow down", wait)) is in_place


def test_a_rate_limit_is_transient_and_nothing_is_both() -> None:
    assert issubclass(RateLimited, Transient)
    assert not issubclass(Transient, Permanent)
    assert not issubclass(Permanent, Transient)
