"""Redis goes away under running web and worker processes: 503 with Retry-After, then back by
itself, and the delivery refused meanwhile is processed when redelivered."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from rq import Worker

from ghapp.embedded_redis import EmbeddedRedis
from ghapp.simulator import GitHubSimulator
from tests.e2e.conftest import start_stack
from tests.support import Process, child_env, ghapp, wait_for, wait_job


@pytest.fixture
def stoppable_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis this test may stop and start again at the same address."""
    sockets = tmp_path / "sock"
    sockets.mkdir(mode=0o700)
    server = EmbeddedRedis(tmp_path / "data", socket_dir=sockets)
    server.start()
    yield server
    server.stop()


def status(url: str) -> int:
    try:
        return requests.get(url, timeout=5).status_code
    except requests.RequestException:
        return 0


def test_web_and_workers_ride_out_a_redis_outage_without_restart(
    stoppable_redis: EmbeddedRedis,
    app_key: tuple[bytes, bytes],
    simulator: GitHubSimulator,
    tmp_path: Path,
    fresh_repo_name: str,
):
    home = tmp_path / "stack"
    home.mkdir()
    stack = start_stack(
        redis_url=stoppable_redis.url, app_key=app_key, simulator=simulator, home=home, workers=1
    )
    try:
        repo = stack.repository(fresh_repo_name)
        payload = simulator.push_payload(
            repo.full_name, before=None, after=simulator.branch_tip(repo.full_name)
        )
        stoppable_redis.stop()
        assert status(stack.url + "/healthz") == 503
        delivery = str(uuid.uuid4())
        refused = stack.post(payload, delivery=delivery)
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) > 0
        assert "Redis" in refused.json()["error"]
        assert "Traceback" not in stack.web.output()

        stoppable_redis.start()
        wait_for(lambda: status(stack.url + "/healthz") == 200, 20, "the web process to recover")
        # GitHub's redelivery of the refused delivery is accepted, and a worker that lived
        # through the outage processes it.
        again = stack.post(payload, delivery=delivery)
        assert again.status_code == 202, again.text
        job = wait_job(stack.redis, again.json()["job_id"], timeout=60)
        assert job.get_status() == "finished"
        assert stack.web.alive()
        assert all(w.alive() for w in stack.workers)
        assert len(stack.record(delivery)) == 1
    finally:
        stack.stop()


def test_a_worker_started_before_redis_waits_for_it(
    tmp_path: Path, app_key: tuple[bytes, bytes], simulator: GitHubSimulator
):
    sockets = tmp_path / "sock"
    sockets.mkdir(mode=0o700)
    server = EmbeddedRedis(tmp_path / "data", socket_dir=sockets)
    env = child_env(
        {
            "GITHUB_APP_ID": "1",
            "GITHUB_PRIVATE_KEY": app_key[0].decode(),
            "REDIS_URL": server.url,  # known before it starts: its socket directory is fixed
            "GITHUB_API_URL": simulator.api_url,
        }
    )
    worker = Process("worker-early", ghapp(["worker"]), env, tmp_path, tmp_path)
    try:
        wait_for(lambda: "Redis is not answering" in worker.output(), 20, "the worker to wait")
        assert worker.alive()
        server.start()
        client = redis.Redis.from_url(server.url)
        wait_for(lambda: Worker.all(connection=client), 20, "the worker to register")
        assert "Traceback" not in worker.output()
    finally:
        worker.stop()
        server.stop()
