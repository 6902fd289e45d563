"""``GET /metrics``: the figures every process counts in Redis, in Prometheus' text format, and
the queue's state read at scrape time. With METRICS_TOKEN set, a bearer token is required."""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import redis
from flask import Blueprint, Response, current_app, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from rq import Queue, worker_registration
from rq.job import Job

from ghapp.core import metrics
from ghapp.core.settings import Settings

blueprint = Blueprint("metrics", __name__)

# The head of the queue is looked at this far for a job still there (one may be deleted since).
OLDEST_LOOKAHEAD = 10
# Prometheus' text format 0.0.4, what generate_latest writes (prometheus_client's own
# CONTENT_TYPE_LATEST now names version 1.0.0, a format this endpoint does not negotiate).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
UNAUTHORIZED = "send METRICS_TOKEN's value as 'Authorization: Bearer <token>'"


@dataclass(frozen=True)
class QueueState:
    """The queue as a scrape finds it."""

    depth: int
    oldest_age: float  # seconds the oldest queued job has waited; 0 when none waits
    workers: int  # RQ workers alive on the queue


def queue_state(connection: redis.Redis, queue_name: str, now: float | None = None) -> QueueState:
    """How many jobs wait, for how long the oldest has, and how many workers are alive."""
    queue = Queue(queue_name, connection=connection)
    depth = queue.count
    oldest_age = 0.0
    if depth:
        waiting = Job.fetch_many(queue.get_job_ids(0, OLDEST_LOOKAHEAD - 1), connection=connection)
        enqueued = [job.enqueued_at for job in waiting if job and job.enqueued_at]
        if enqueued:
            moment = time.time() if now is None else now
            oldest_age = max(0.0, moment - min(enqueued).timestamp())
    # A worker's key expires when it stops heartbeating; the queue's set may still name it.
    keys = sorted(worker_registration.get_keys(queue=queue))
    with connection.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.exists(key)
        alive = sum(pipe.execute()) if keys else 0
    return QueueState(depth=depth, oldest_age=oldest_age, workers=alive)


class FiguresCollector(Collector):
    """Prometheus' view of what was read from Redis: the counters and histograms every process
    adds to, and the queue's gauges."""

    def __init__(self, figures: metrics.Figures, queue: QueueState) -> None:
        self.figures = figures
        self.queue = queue

    def collect(self) -> Iterator[Metric]:
        for name, help_text in metrics.COUNTERS.items():
            yield self._counter(name, help_text)
        for name, help_text in metrics.HISTOGRAMS.items():
            histogram = self.figures.histograms.get(name) or metrics.Histogram()
            buckets = histogram.buckets or [("+Inf", 0)]
            yield HistogramMetricFamily(
                name, help_text, buckets=list(buckets), sum_value=histogram.sum
            )
        yield GaugeMetricFamily(
            "ghapp_queue_depth", "Jobs waiting in the queue.", value=self.queue.depth
        )
        yield GaugeMetricFamily(
            "ghapp_oldest_queued_job_age_seconds",
            "How long the oldest job in the queue has waited (0 when none waits).",
            value=self.queue.oldest_age,
        )
        yield GaugeMetricFamily(
            "ghapp_workers", "RQ workers alive on the queue.", value=self.queue.workers
        )

    def _counter(self, name: str, help_text: str) -> CounterMetricFamily:
        label_names = metrics.LABELS.get(name, ())
        rows = self.figures.counters.get(name, [])
        if not label_names:
            return CounterMetricFamily(name, help_text, value=sum(value for _, value in rows))
        family = CounterMetricFamily(name, help_text, labels=label_names)
        totals: dict[tuple[str, ...], int] = {}
        for labels, value in rows:
            key = tuple(labels.get(label, "") for label in label_names)
            totals[key] = totals.get(key, 0) + value
        for key, value in sorted(totals.items()):
            family.add_metric(list(key), value)
        return family


def exposition(figures: metrics.Figures, queue: QueueState) -> bytes:
    """The text Prometheus scrapes, from a registry of its own (never the process's global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FiguresCollector(figures, queue))
    return generate_latest(registry)


def authorized(settings: Settings, header: str | None) -> bool:
    """True when no METRICS_TOKEN is set, or ``header`` is ``Bearer <that token>``."""
    if not settings.metrics_token:
        return True
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), settings.metrics_token.encode())


@blueprint.get("/metrics")
def scrape() -> Response:
    settings: Settings = current_app.extensions["ghapp.settings"]
    if not authorized(settings, request.headers.get("Authorization")):
        return Response(
            orjson.dumps({"status": "error", "error": UNAUTHORIZED}),
            401,
            {"WWW-Authenticate": "Bearer"},
            content_type="application/json",
        )
    connection: redis.Redis = current_app.extensions["ghapp.redis"]
    # Read before rendering: a RedisError here is answered 503 by the error handler.
    figures = metrics.read_all(connection)
    queue = queue_state(connection, settings.queue_name)
    return Response(exposition(figures, queue), 200, content_type=CONTENT_TYPE)
