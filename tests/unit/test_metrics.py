"""The figures in Redis as /metrics shows them, the route's access rules, and what the worker
counts: GitHub's answers, token mints and redeliveries asked for."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue, SimpleWorker, Worker

from ghapp.core import metrics, redis_keys
from ghapp.core.settings import Settings
from ghapp.local import free_port
from ghapp.simulator import GitHubSimulator
from tests.conftest import APP_ID, INSTALLATION_ID
from webapp.errors import register_error_handlers
from webapp.metrics import FiguresCollector, QueueState, blueprint, exposition, queue_state
from worker import runtime
from worker.failures import Transient
from worker.github_api import GitHubAPI, GitHubRefused, session
from worker.redelivery import REDELIVERY_JOB
from worker.tokens import TokenScope, app_jwt

NO_QUEUE = QueueState(depth=0, oldest_age=0.0, workers=0)


@pytest.fixture
def figures_redis(redis_client: redis.Redis) -> Iterator[redis.Redis]:
    """The test Redis with no figures counted yet."""
    redis_client.delete(redis_keys.METRICS_COUNTERS, redis_keys.METRICS_HISTOGRAMS)
    yield redis_client
    redis_client.delete(redis_keys.METRICS_COUNTERS, redis_keys.METRICS_HISTOGRAMS)


def scraped(text: bytes | str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and labels, as Prometheus' own parser reads it."""
    decoded = text.decode() if isinstance(text, bytes) else text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(decoded)
        for sample in family.samples
    }


def shown(connection: redis.Redis, queue: QueueState = NO_QUEUE) -> dict[Any, float]:
    return scraped(exposition(metrics.read_all(connection), queue))


def test_counters_are_shown_with_their_labels(figures_redis: redis.Redis):
    metrics.count(figures_redis, "ghapp_webhooks_total", event="push", outcome="queued")
    metrics.count(figures_redis, "ghapp_webhooks_total", 2, event="push", outcome="queued")
    metrics.count(figures_redis, "ghapp_webhooks_total", event="-", outcome="refused")
    metrics.count(figures_redis, "ghapp_jobs_total", outcome="processed")
    metrics.count(figures_redis, "ghapp_github_requests_total", 4, status="201")
    metrics.count(figures_redis, "ghapp_token_mints_total")
    samples = shown(figures_redis)
    assert samples[("ghapp_webhooks_total", (("event", "push"), ("outcome", "queued")))] == 3
    assert samples[("ghapp_webhooks_total", (("event", "-"), ("outcome", "refused")))] == 1
    assert samples[("ghapp_jobs_total", (("outcome", "processed"),))] == 1
    assert samples[("ghapp_github_requests_total", (("status", "201"),))] == 4
    assert samples[("ghapp_token_mints_total", ())] == 1


def test_a_counter_moved_by_hincrby_on_counter_field_is_read_like_one_moved_by_count(
    figures_redis: redis.Redis,
):
    """The lead's Lua script writes HINCRBY on counter_field(...): the same figure."""
    field = metrics.counter_field("ghapp_webhooks_total", outcome="duplicate", event="push")
    figures_redis.hincrby(redis_keys.METRICS_COUNTERS, field, 5)
    metrics.count(figures_redis, "ghapp_webhooks_total", event="push", outcome="duplicate")
    samples = shown(figures_redis)
    assert samples[("ghapp_webhooks_total", (("event", "push"), ("outcome", "duplicate")))] == 6


def test_nothing_counted_yet_still_shows_every_metric(figures_redis: redis.Redis):
    text = exposition(metrics.read_all(figures_redis), NO_QUEUE).decode()
    for name in [*metrics.COUNTERS, *metrics.HISTOGRAMS]:
        assert f"# TYPE {name} " in text
    samples = scraped(text)
    assert samples[("ghapp_token_mints_total", ())] == 0
    assert samples[("ghapp_redeliveries_requested_total", ())] == 0
    assert samples[("ghapp_job_duration_seconds_count", ())] == 0
    assert samples[("ghapp_job_duration_seconds_bucket", (("le", "+Inf"),))] == 0


def test_fields_not_written_by_count_are_left_out(figures_redis: redis.Redis):
    figures_redis.hset(redis_keys.METRICS_COUNTERS, "ghapp_jobs_total|not json", 3)
    figures_redis.hset(redis_keys.METRICS_COUNTERS, "someone_elses_total|{}", 3)
    samples = shown(figures_redis)
    assert not [key for key in samples if key[0] == "ghapp_jobs_total"]
    assert not [key for key in samples if key[0].startswith("someone")]


def test_histogram_buckets_are_cumulative_with_sum_and_count(figures_redis: redis.Redis):
    for seconds in (0.05, 0.3, 0.3, 4.0, 700.0):
        metrics.observe(figures_redis, "ghapp_job_duration_seconds", seconds)
    metrics.observe(figures_redis, "ghapp_fetch_duration_seconds", 0.2)
    samples = shown(figures_redis)

    def bucket(name: str, le: str) -> float:
        return samples[(f"{name}_bucket", (("le", le),))]

    job = "ghapp_job_duration_seconds"
    assert bucket(job, "0.1") == 1
    assert bucket(job, "0.25") == 1
    assert bucket(job, "0.5") == 3
    assert bucket(job, "5.0") == 4
    assert bucket(job, "600.0") == 4
    assert bucket(job, "+Inf") == 5
    assert samples[(f"{job}_count", ())] == 5
    assert samples[(f"{job}_sum", ())] == pytest.approx(704.65)
    fetch = "ghapp_fetch_duration_seconds"
    assert bucket(fetch, "0.1") == 0
    assert bucket(fetch, "0.25") == 1
    assert samples[(f"{fetch}_count", ())] == 1


def test_the_queue_gauges_are_shown_as_read():
    queue = QueueState(depth=3, oldest_age=12.5, workers=2)
    figures = metrics.Figures(counters={}, histograms={})
    samples = scraped(exposition(figures, queue))
    assert samples[("ghapp_queue_depth", ())] == 3
    assert samples[("ghapp_oldest_queued_job_age_seconds", ())] == 12.5
    assert samples[("ghapp_workers", ())] == 2
    # A collector of its own: nothing of the process's global registry (python_info, gc_…).
    assert not [key for key in samples if not key[0].startswith("ghapp_")]
    assert list(FiguresCollector(figures, queue).collect())


def test_queue_state_counts_waiting_jobs_the_oldest_ones_age_and_live_workers(
    redis_client: redis.Redis,
):
    name = f"metrics-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, connection=redis_client)
    assert queue_state(redis_client, name) == QueueState(depth=0, oldest_age=0.0, workers=0)
    first = queue.enqueue("os.getcwd")
    queue.enqueue("os.getcwd")
    worker = Worker([queue], connection=redis_client, name=f"w-{name}")
    gone = Worker([queue], connection=redis_client, name=f"gone-{name}")
    try:
        worker.register_birth()
        gone.register_birth()
        redis_client.delete(gone.key)  # its key expired: the queue's set still names it
        assert first.enqueued_at is not None
        later = first.enqueued_at.timestamp() + 30
        state = queue_state(redis_client, name, now=later)
        assert (state.depth, state.workers) == (2, 1)
        assert state.oldest_age == pytest.approx(30, abs=0.01)
        first.delete()  # deleted under the queue's feet: the next one is the oldest
        assert queue_state(redis_client, name).depth == 1
    finally:
        worker.register_death()
        queue.delete(delete_jobs=True)


# The route ---------------------------------------------------------------------------------


def client_for(settings: Settings, connection: redis.Redis) -> Any:
    app = Flask(__name__)
    app.extensions["ghapp.settings"] = settings
    app.extensions["ghapp.redis"] = connection
    app.register_blueprint(blueprint)
    register_error_handlers(app)
    return app.test_client()


def test_without_metrics_token_the_metrics_are_open(figures_redis: redis.Redis):
    metrics.count(figures_redis, "ghapp_token_mints_total")
    answer = client_for(Settings(), figures_redis).get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert scraped(answer.data)[("ghapp_token_mints_total", ())] == 1


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong", "Basic czNjcjN0LXRva2Vu", "s3cr3t-token", "Bearer s3cr3t"],
)
def test_with_metrics_token_anything_but_that_bearer_token_is_refused(
    redis_client: redis.Redis, authorization: str | None
):
    client = client_for(Settings(metrics_token="s3cr3t-token"), redis_client)
    headers = {"Authorization": authorization} if authorization is not None else {}
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert answer.json == {
        "status": "error",
        "error": "send METRICS_TOKEN's value as 'Authorization: Bearer <token>'",
    }
    assert b"\n" not in answer.data
    assert b"s3cr3t" not in answer.data


@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
def test_with_metrics_token_that_bearer_token_is_let_in(redis_client: redis.Redis, scheme: str):
    client = client_for(Settings(metrics_token="s3cr3t-token"), redis_client)
    answer = client.get("/metrics", headers={"Authorization": f"{scheme} s3cr3t-token"})
    assert answer.status_code == 200
    assert b"ghapp_queue_depth" in answer.data


def test_redis_unreachable_at_scrape_is_503():
    down = redis.Redis(port=free_port(), socket_connect_timeout=1)
    answer = client_for(Settings(), down).get("/metrics")
    assert answer.status_code == 503
    assert "unreachable" in answer.json["error"]


# What the worker counts ----------------------------------------------------------------------


@pytest.fixture
def own_simulator(app_key: tuple[bytes, bytes], tmp_path: Path) -> Iterator[GitHubSimulator]:
    """A simulator of this test's own: its injected failures and deliveries are nobody else's."""
    with GitHubSimulator(
        app_id=APP_ID, public_key_pem=app_key[1], root=tmp_path / "github"
    ) as simulator:
        simulator.add_installation(INSTALLATION_ID)
        yield simulator


@pytest.fixture
def worker_runtime(
    own_simulator: GitHubSimulator,
    app_key: tuple[bytes, bytes],
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> runtime.Runtime:
    monkeypatch.setattr(runtime, "_current", None)
    settings = Settings(
        app_id=APP_ID,
        private_key=app_key[0],
        api_url=own_simulator.api_url,
        github_url=own_simulator.url,
        redis_url=redis_url,
        redelivery_interval=0,
    )
    return runtime.configure(settings)


def requests_counted(connection: redis.Redis) -> dict[str, int]:
    counted = metrics.read_all(connection).counters["ghapp_github_requests_total"]
    return {labels["status"]: value for labels, value in counted}


def test_every_answer_from_github_is_told_with_its_status(own_simulator: GitHubSimulator):
    told: list[str] = []
    api = GitHubAPI(own_simulator.api_url, session(total_retries=2), on_answer=told.append)
    own_simulator.inject_failure("GET", "/api/v3/app/hook", 502)  # retried by urllib3
    with pytest.raises(GitHubRefused):
        api.request("GET", "/app/hook/deliveries", "not-a-jwt")
    assert told == ["502", "401"]


def test_a_call_that_never_got_an_answer_is_told_as_error():
    told: list[str] = []
    api = GitHubAPI(f"http://127.0.0.1:{free_port()}", session(0), on_answer=told.append)
    with pytest.raises(Transient):
        api.request("GET", "/app", "not-a-jwt")
    assert told == ["error"]


def test_tokens_minted_and_githubs_answers_are_counted_in_redis(
    worker_runtime: runtime.Runtime, figures_redis: redis.Redis
):
    tokens = worker_runtime.tokens(figures_redis)
    scope = TokenScope(repository_ids=(), permissions={"contents": "read"})
    first = tokens.token(INSTALLATION_ID, scope)
    again = tokens.token(INSTALLATION_ID, scope)  # from the cache: no mint, no request
    assert again.value == first.value
    figures = metrics.read_all(figures_redis)
    assert figures.counters["ghapp_token_mints_total"] == [({}, 1)]
    assert requests_counted(figures_redis) == {"201": 1}
    figures_redis.delete(redis_keys.tokens(INSTALLATION_ID))


def test_counting_with_redis_down_never_fails_the_call_to_github(
    own_simulator: GitHubSimulator, app_key: tuple[bytes, bytes], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(runtime, "_current", None)
    settings = Settings(
        app_id=APP_ID,
        private_key=app_key[0],
        api_url=own_simulator.api_url,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
    )
    rt = runtime.configure(settings)
    started = time.monotonic()
    bearer = app_jwt(app_id=APP_ID, private_key=app_key[0], now=time.time())
    answer = rt.api.request("GET", "/app/hook/deliveries", bearer)
    assert answer.status_code == 200
    assert time.monotonic() - started < 5


def test_each_redelivery_asked_for_is_counted(
    worker_runtime: runtime.Runtime,
    own_simulator: GitHubSimulator,
    figures_redis: redis.Redis,
):
    own_simulator.webhook_url = f"http://127.0.0.1:{free_port()}/webhook"  # nobody answers
    own_simulator.webhook_secret = b"test-secret"
    lost = [own_simulator.send_webhook("ping", {"zen": "hello"}) for _ in range(2)]
    assert all(delivery.status != "OK" for delivery in lost)
    figures_redis.delete(redis_keys.REDELIVERY_CURSOR, redis_keys.REDELIVERY_LOCK)
    for delivery in lost:
        figures_redis.delete(redis_keys.redelivery_asked(delivery.guid))
    queue = Queue(f"redelivery-{uuid.uuid4().hex[:8]}", connection=figures_redis)
    job = queue.enqueue(REDELIVERY_JOB)
    try:
        SimpleWorker([queue], connection=figures_redis).work(burst=True)
        assert job.return_value() is not None, job.latest_result()
        assert sorted(job.return_value()["redelivered"]) == sorted(d.guid for d in lost)
    finally:
        queue.delete(delete_jobs=True)
        figures_redis.delete(redis_keys.REDELIVERY_CURSOR)
    figures = metrics.read_all(figures_redis)
    assert figures.counters["ghapp_redeliveries_requested_total"] == [({}, 2)]
    # Listing the deliveries and asking for each: GitHub's answers, counted.
    assert requests_counted(figures_redis) == {"200": 1, "202": 2}
