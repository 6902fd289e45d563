"""The real stack for end-to-end tests: gunicorn (the Procfile's web line) and RQ worker
processes, against the GitHub simulator and a Redis of the test run's own."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from rq import Worker

from ghapp.embedded_redis import EmbeddedRedis
from ghapp.local import free_port
from ghapp.simulator import GitHubSimulator, Repository
from tests.conftest import APP_ID, INSTALLATION_ID
from tests.support import (
    Process,
    child_env,
    claim_empty_db,
    ghapp,
    healthy,
    signed_post,
    wait_for,
    with_db,
)

# Run by every job: a test repository can carry a script to exercise the processing rules.
PROCESS_COMMAND = "if [ -f ghapp-test.sh ]; then sh ghapp-test.sh; else echo processed; fi"
JOB_TIMEOUT = 6
WORKERS = 2
# Every git command line the workers run, recorded by a wrapper around the real git (git gets
# a hermetic environment of its own, so the log's path is written into the wrapper).
GIT_WRAPPER = '#!/bin/sh\nprintf "%%s\\n" "$*" >> %s\nexec git "$@"\n'
# For tests whose command leaves marks in the records directory: the sandbox would hide it.
UNSANDBOXED = {"SANDBOX": "none", "PROCESS_ENV": "GHAPP_TEST_RECORDS"}


@dataclass
class Stack:
    url: str
    redis: redis.Redis
    simulator: GitHubSimulator
    home: Path
    web: Process
    workers: list[Process]
    env: dict[str, str]

    @property
    def webhook(self) -> str:
        return self.url + "/webhook"

    @property
    def records(self) -> Path:
        return self.home / "records"

    @property
    def tmp(self) -> Path:
        """TMPDIR of the web and worker processes: where checkouts are made."""
        return self.home / "tmp"

    @property
    def git_log(self) -> Path:
        return self.home / "git-commands.log"

    def post(self, body: bytes | dict[str, Any], **kwargs: Any) -> requests.Response:
        return signed_post(self.webhook, body, **kwargs)

    def record(self, delivery: str) -> list[dict[str, Any]]:
        path = self.records / f"{delivery}.json"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def logs(self) -> str:
        return "".join(p.output() for p in [self.web, *self.workers])

    def log_mark(self) -> dict[str, int]:
        """Where each process's log ends now, for ``logs_since``."""
        return {p.name: len(p.output()) for p in [self.web, *self.workers]}

    def logs_since(self, mark: dict[str, int]) -> str:
        """What the processes logged after ``mark``."""
        return "".join(p.output()[mark.get(p.name, 0) :] for p in [self.web, *self.workers])

    def repository(self, name: str, files: dict[str, str] | None = None) -> Repository:
        return self.simulator.create_repository(
            name, installation_id=INSTALLATION_ID, files=files or {"README.md": "hello\n"}
        )

    def start_worker(self, name: str, overrides: Mapping[str, str] | None = None) -> Process:
        env = {**self.env, **(overrides or {})}
        process = Process(name, ghapp(["worker"]), env, self.home, self.home / "logs")
        self.workers.append(process)
        return process

    def stop(self) -> None:
        for process in [self.web, *self.workers]:
            process.stop()


def start_stack(
    *,
    redis_url: str,
    app_key: tuple[bytes, bytes],
    simulator: GitHubSimulator,
    home: Path,
    overrides: Mapping[str, str] | None = None,
    workers: int = WORKERS,
) -> Stack:
    """Start gunicorn and ``workers`` worker processes with the test settings (plus
    ``overrides``), and wait until they answer."""
    for sub in ("records", "tmp", "logs"):
        (home / sub).mkdir(exist_ok=True)
    wrapper = home / "git"
    wrapper.write_text(GIT_WRAPPER % shlex.quote(str(home / "git-commands.log")))
    wrapper.chmod(0o755)
    port = free_port()
    settings = {
        "GITHUB_APP_ID": APP_ID,
        "GITHUB_PRIVATE_KEY": app_key[0].decode(),
        "GITHUB_WEBHOOK_SECRET": "old-secret, test-secret",
        "GITHUB_API_URL": simulator.api_url,
        "GITHUB_URL": simulator.url,
        "REDIS_URL": redis_url,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "PROCESS_COMMAND": PROCESS_COMMAND,
        "PROCESSOR": "tests.e2e.processors:record",
        "PUSH_BRANCHES": "main,release/*",
        "JOB_TIMEOUT": str(JOB_TIMEOUT),
        "REDELIVERY_INTERVAL": "0",
        "GHAPP_TEST_RECORDS": str(home / "records"),
        "GIT_PYTHON_GIT_EXECUTABLE": str(wrapper),
        "TMPDIR": str(home / "tmp"),
    }
    env = child_env({**settings, **(overrides or {})})
    client = redis.Redis.from_url(redis_url)
    logs = home / "logs"
    web = Process("web", ghapp(["web"]), env, home, logs)
    url = f"http://127.0.0.1:{port}"
    stack = Stack(url, client, simulator, home, web, [], env)
    for n in range(workers):
        stack.start_worker(f"worker-{n}")

    try:
        wait_for(lambda: healthy(url), 20, "the web process to answer /healthz")
        wait_for(lambda: len(Worker.all(connection=client)) >= workers, 20, "the workers")
    except BaseException:
        stack.stop()
        raise
    return stack


@pytest.fixture(scope="session")
def stack(
    redis_url: str,
    app_key: tuple[bytes, bytes],
    simulator: GitHubSimulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """The session's shared stack (its processes' working directory has no .env)."""
    running = start_stack(
        redis_url=redis_url,
        app_key=app_key,
        simulator=simulator,
        home=tmp_path_factory.mktemp("stack"),
    )
    yield running
    running.stop()


@pytest.fixture
def own_redis_url(tmp_path: Path) -> Iterator[str]:
    """A Redis for one test's own stack: another empty database of REDIS_URL's server, or a
    second embedded server."""
    shared = os.environ.get("REDIS_URL")
    if shared:
        url = with_db(shared, claim_empty_db(shared))
        yield url
        redis.Redis.from_url(url).flushdb()
        return
    server = EmbeddedRedis(tmp_path / "redis")
    yield server.start()
    server.stop()


@pytest.fixture
def own_stack(
    own_redis_url: str,
    app_key: tuple[bytes, bytes],
    simulator: GitHubSimulator,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Stack]:
    """A stack of one test's own, on its own Redis; settings from ``@pytest.mark.stack(...)``
    (``overrides`` dict, ``workers`` count)."""
    marker = request.node.get_closest_marker("stack")
    options = dict(marker.kwargs) if marker else {}
    home = tmp_path / "stack"
    home.mkdir()
    running = start_stack(
        redis_url=own_redis_url,
        app_key=app_key,
        simulator=simulator,
        home=home,
        overrides=options.get("overrides"),
        workers=options.get("workers", WORKERS),
    )
    yield running
    running.stop()
