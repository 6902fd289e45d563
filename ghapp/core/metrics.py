"""Counters and histograms kept in Redis, so every web and worker process, on any machine, adds to
the same figures; ``/metrics`` reads them back (``read_all``) for Prometheus.

A counter is one field of a Redis hash (``"<name>|<labels as JSON>"``) moved by HINCRBY; a
histogram is a count per bucket, a sum and a count, in another hash. Writes go in the caller's
pipeline or Lua script: they cost no round trip of their own.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from ghapp.core import redis_keys

log = logging.getLogger("ghapp.metrics")

# Seconds: a fetch takes from a fraction of a second to minutes, a job up to JOB_TIMEOUT.
BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, math.inf)

# name: what it counts (the help text /metrics shows).
COUNTERS = {
    "ghapp_webhooks_total": "Webhook deliveries answered, by event and outcome.",
    "ghapp_jobs_total": "Jobs ended (processed, failed, superseded) or run again later "
    "(rescheduled, retried), by outcome.",
    "ghapp_token_mints_total": "Installation tokens minted.",
    "ghapp_github_requests_total": "Requests to GitHub's REST API, by status.",
    "ghapp_redeliveries_requested_total": "Failed deliveries GitHub was asked to redeliver.",
}
# name: its labels, in the order /metrics shows them.
LABELS: dict[str, tuple[str, ...]] = {
    "ghapp_webhooks_total": ("event", "outcome"),
    "ghapp_jobs_total": ("outcome",),
    "ghapp_github_requests_total": ("status",),
}
HISTOGRAMS = {
    "ghapp_job_duration_seconds": "Time from a job's start to its end.",
    "ghapp_fetch_duration_seconds": "Time the checkout of the pushed commit took.",
}


# The event label's values: GitHub's events ghapp handles; anything else (a header no signature
# covers) is "other", so no request can make a label of its own.
EVENTS = ("push", "ping", "installation", "installation_repositories", "check_run", "check_suite")


def event_label(event: str) -> str:
    return event if event in EVENTS or event in ("-", "retry") else "other"


def counter_field(name: str, **labels: str) -> str:
    """The hash field of one counter with its labels."""
    assert name in COUNTERS, name
    return f"{name}|{json.dumps(labels, sort_keys=True, separators=(',', ':'))}"


def count(
    client: redis.Redis | redis.client.Pipeline, name: str, amount: int = 1, **labels: str
) -> None:
    """Add ``amount`` to a counter (in ``client``'s pipeline, if it is one)."""
    client.hincrby(redis_keys.METRICS_COUNTERS, counter_field(name, **labels), amount)


def count_quietly(client: redis.Redis, name: str, amount: int = 1, **labels: str) -> bool:
    """``count()`` at once, unless Redis fails (False then): no figure is worth failing a call
    to GitHub or a job for."""
    try:
        count(client, name, amount, **labels)
    except redis.RedisError as exc:
        log.debug("%s not counted: Redis failed (%s)", name, type(exc).__name__)
        return False
    return True


def observe(client: redis.Redis | redis.client.Pipeline, name: str, value: float) -> None:
    """Record one observation of a histogram: its bucket, the sum and the count."""
    assert name in HISTOGRAMS, name
    bucket = next(b for b in BUCKETS if value <= b)
    key = redis_keys.METRICS_HISTOGRAMS
    client.hincrby(key, f"{name}|le={_bound(bucket)}", 1)
    client.hincrbyfloat(key, f"{name}|sum", value)
    client.hincrby(key, f"{name}|count", 1)


def _bound(bucket: float) -> str:
    return "+Inf" if math.isinf(bucket) else repr(bucket)


@dataclass
class Histogram:
    """One histogram as read back: cumulative bucket counts, sum and count."""

    buckets: list[tuple[str, int]] = field(default_factory=list)
    sum: float = 0.0
    count: int = 0


@dataclass
class Figures:
    """Everything counted, as ``/metrics`` shows it."""

    counters: dict[str, list[tuple[dict[str, str], int]]]
    histograms: dict[str, Histogram]


def read_all(connection: redis.Redis) -> Figures:
    """Every counter (with its labels) and histogram, in one round trip."""
    with connection.pipeline(transaction=False) as pipe:
        pipe.hgetall(redis_keys.METRICS_COUNTERS)
        pipe.hgetall(redis_keys.METRICS_HISTOGRAMS)
        counted, observed = pipe.execute()
    counters: dict[str, list[tuple[dict[str, str], int]]] = {name: [] for name in COUNTERS}
    for raw_field, raw_value in counted.items():
        name, _, labels = _text(raw_field).partition("|")
        if name in counters:
            try:
                parsed: Any = json.loads(labels or "{}")
            except ValueError:
                continue  # not written by count(): ignored
            if isinstance(parsed, dict):
                counters[name].append(({str(k): str(v) for k, v in parsed.items()}, int(raw_value)))
    return Figures(counters=counters, histograms=_histograms(observed))


def _histograms(observed: Mapping[bytes, bytes]) -> dict[str, Histogram]:
    fields = {_text(k): _text(v) for k, v in observed.items()}
    histograms: dict[str, Histogram] = {}
    for name in HISTOGRAMS:
        running = 0
        histogram = Histogram()
        for bucket in BUCKETS:
            running += int(fields.get(f"{name}|le={_bound(bucket)}", "0"))
            histogram.buckets.append((_bound(bucket), running))
        histogram.sum = float(fields.get(f"{name}|sum", "0"))
        histogram.count = int(fields.get(f"{name}|count", "0"))
        histograms[name] = histogram
    return histograms


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
