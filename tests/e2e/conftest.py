"""The real stack for end-to-end tests: gunicorn (the Procfile's web line) and RQ worker
processes, against the GitHub simulator and the session's Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from rq import Worker

from ghapp.simulator import GitHubSimulator, Repository
from tests.conftest import APP_ID, INSTALLATION_ID
from tests.support import Process, child_env, free_port, ghapp, signed_post, wait_for

# Run by every job: a test repository can carry a script to exercise the processing rules.
PROCESS_COMMAND = "if [ -f ghapp-test.sh ]; then sh ghapp-test.sh; else echo processed; fi"
JOB_TIMEOUT = 6
WORKERS = 2


@dataclass
class Stack:
    url: str
    redis: redis.Redis
    simulator: GitHubSimulator
    records: Path
    web: Process
    workers: list[Process]
    env: dict[str, str]

    @property
    def webhook(self) -> str:
        return self.url + "/webhook"

    def post(self, body: bytes | dict[str, Any], **kwargs: Any) -> requests.Response:
        return signed_post(self.webhook, body, **kwargs)

    def record(self, delivery: str) -> list[dict[str, Any]]:
        path = self.records / f"{delivery}.json"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def logs(self) -> str:
        return "".join(p.output() for p in [self.web, *self.workers])

    def repository(self, name: str, files: dict[str, str] | None = None) -> Repository:
        return self.simulator.create_repository(
            name, installation_id=INSTALLATION_ID, files=files or {"README.md": "hello\n"}
        )


@pytest.fixture(scope="session")
def stack(
    redis_url: str,
    app_key: tuple[bytes, bytes],
    simulator: GitHubSimulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("stack")  # the processes' working directory: no .env here
    records = home / "records"
    records.mkdir()
    logs = tmp_path_factory.mktemp("logs")
    port = free_port()
    env = child_env(
        {
            "GITHUB_APP_ID": APP_ID,
            "GITHUB_PRIVATE_KEY": app_key[0].decode(),
            "GITHUB_WEBHOOK_SECRET": "old-secret, test-secret",
            "GITHUB_API_URL": simulator.api_url,
            "GITHUB_URL": simulator.url,
            "REDIS_URL": redis_url,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "PROCESS_COMMAND": PROCESS_COMMAND,
            "PROCESSOR": "tests.e2e.processors:record",
            "PUSH_BRANCHES": "main,release/*",
            "JOB_TIMEOUT": str(JOB_TIMEOUT),
            "GHAPP_TEST_RECORDS": str(records),
        }
    )
    client = redis.Redis.from_url(redis_url)
    web = Process("web", ghapp(["web"]), env, home, logs)
    workers = [Process(f"worker-{n}", ghapp(["worker"]), env, home, logs) for n in range(WORKERS)]
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return requests.get(url + "/healthz", timeout=1).ok
        except requests.RequestException:
            return False

    stack = Stack(url, client, simulator, records, web, workers, env)
    try:
        wait_for(healthy, 20, "the web process to answer /healthz")
        wait_for(lambda: len(Worker.all(connection=client)) >= WORKERS, 20, "the workers")
        yield stack
    finally:
        for process in [web, *workers]:
            process.stop()
