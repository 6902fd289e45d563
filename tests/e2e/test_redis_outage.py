"""Redis goes away under a running web process: 503 with Retry-After, then back by itself."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ghapp.embedded_redis import EmbeddedRedis
from tests.conftest import APP_ID
from tests.support import Process, child_env, free_port, ghapp, signed_post, wait_for


@pytest.fixture()
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    sockets = tmp_path / "sock"
    sockets.mkdir(mode=0o700)
    server = EmbeddedRedis(tmp_path / "data", socket_dir=sockets)
    server.start()
    yield server
    server.stop()


def test_web_answers_503_while_redis_is_down_and_recovers_without_restart(
    own_redis: EmbeddedRedis, tmp_path: Path
):
    port = free_port()
    env = child_env(
        {
            "GITHUB_APP_ID": APP_ID,
            "GITHUB_WEBHOOK_SECRET": "test-secret",
            "REDIS_URL": own_redis.url,
            "HOST": "127.0.0.1",
            "PORT": str(port),
        }
    )
    web = Process("web-outage", ghapp(["web"]), env, tmp_path, tmp_path)
    url = f"http://127.0.0.1:{port}"
    payload = {
        "ref": "refs/heads/main",
        "before": "0" * 40,
        "after": "a" * 40,
        "installation": {"id": 1},
        "repository": {
            "id": 5,
            "full_name": "octo-org/down",
            "clone_url": "https://github.com/octo-org/down.git",
        },
    }
    try:
        wait_for(lambda: _status(url + "/healthz") == 200, 20, "the web process")
        own_redis.stop()
        assert _status(url + "/healthz") == 503
        delivery = str(uuid.uuid4())
        refused = signed_post(url + "/webhook", payload, delivery=delivery)
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) > 0
        assert "Redis" in refused.json()["error"]
        assert "Traceback" not in web.output()

        own_redis.start()
        wait_for(lambda: _status(url + "/healthz") == 200, 20, "the web process to recover")
        # The delivery refused during the outage is accepted when GitHub redelivers it.
        again = signed_post(url + "/webhook", payload, delivery=delivery)
        assert again.status_code == 202, again.text
        assert web.alive()
    finally:
        web.stop()


def _status(url: str) -> int:
    try:
        return requests.get(url, timeout=5).status_code
    except requests.RequestException:
        return 0
