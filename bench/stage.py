"""What every section runs against: the GitHub simulator, an embedded Redis, the settings of
ghapp's processes, and the servers measured (ghapp's web process as the Procfile starts it, and
the references in bench/references). Child processes are the tests' own (tests/support.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from types import TracebackType

import redis
import requests

from ghapp.embedded_redis import EmbeddedRedis
from ghapp.local import wait_until
from ghapp.simulator import GitHubSimulator, generate_app_key
from tests.support import ROOT, Process, child_env

HERE = Path(__file__).resolve().parent
SECRET = "bench-secret"
APP_ID = "1"
INSTALLATION = 1
WEB_WORKERS = 2  # WEB_CONCURRENCY for ghapp, -w for the references: the same for all


class Stage:
    """The simulator (one installation) and an embedded Redis, in ``home``; logs in home/logs."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.logs = home / "logs"
        self.logs.mkdir()
        private, public = generate_app_key()
        self.private_key = private
        self.simulator = GitHubSimulator(app_id=APP_ID, public_key_pem=public, root=home / "github")
        self.simulator.start()
        try:
            self.simulator.add_installation(INSTALLATION, account="bench")
            self.redis_server = EmbeddedRedis(home / "redis")
            self.redis_url = self.redis_server.start()
        except BaseException:
            self.simulator.stop()
            raise
        self.redis = redis.Redis.from_url(self.redis_url)

    def close(self) -> None:
        self.redis_server.stop()
        self.simulator.stop()

    def __enter__(self) -> Stage:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of ghapp's processes (and the references'): this stage's settings."""
        return child_env(
            {
                "GITHUB_APP_ID": APP_ID,
                "GITHUB_PRIVATE_KEY": self.private_key.decode(),
                "GITHUB_WEBHOOK_SECRET": SECRET,
                "GITHUB_API_URL": self.simulator.api_url,
                "GITHUB_URL": self.simulator.url,
                "REDIS_URL": self.redis_url,
                "HOST": "127.0.0.1",
                "WEB_CONCURRENCY": str(WEB_WORKERS),
                "REDELIVERY_INTERVAL": "0",
                **extra,
            }
        )


@contextmanager
def started(
    stage: Stage, name: str, argv: list[str], env: dict[str, str], cwd: Path
) -> Iterator[Process]:
    """A child process logging to stage.logs/NAME.log, stopped (its whole group) on the way out."""
    process = Process(name, argv, env, cwd, stage.logs)
    try:
        yield process
    finally:
        process.stop(timeout=20)


def web_line() -> list[str]:
    """The Procfile's web line, as deployed."""
    procfile = (ROOT / "Procfile").read_text()
    web = next(line for line in procfile.splitlines() if line.startswith("web:"))
    return ["sh", "-c", "exec " + web.removeprefix("web:").strip()]


def serve_ghapp(
    stage: Stage, port: int, name: str = "web", **settings: str
) -> AbstractContextManager[Process]:
    """ghapp's web process on ``port``, with this stage's settings plus ``settings``; its log
    is stage.logs/NAME.log."""
    env = stage.env(PORT=str(port), **settings)
    return started(stage, name, web_line(), env, stage.home)


def serve_reference(
    stage: Stage, app: str, port: int, workers: int = WEB_WORKERS
) -> AbstractContextManager[Process]:
    """A reference of bench/references (``naive:app``, ``floor:app``) under gunicorn."""
    argv = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}", app]
    return started(stage, f"{app}-{workers}", argv, stage.env(), HERE / "references")


def answers(url: str) -> bool:
    """Whether the webhook endpoint at ``url`` answers (anything but a 5xx)."""
    try:
        return requests.post(url, data=b"{}", timeout=1).status_code < 500
    except requests.RequestException:
        return False


def rewriting(connection: redis.Redis) -> bool:
    info = connection.info("persistence")
    return bool(info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"])


def settle(connection: redis.Redis) -> None:
    """Empty Redis and let it finish rewriting its append-only file: every measurement starts
    from the same state, with no background rewrite (a fork copying the dataset) inside it."""
    connection.flushdb()
    wait_until(lambda: not rewriting(connection), 120, "Redis to finish rewriting its AOF")
    connection.bgrewriteaof()
    wait_until(lambda: not rewriting(connection), 120, "Redis to rewrite its AOF")


@contextmanager
def no_aof_rewrites(connection: redis.Redis) -> Iterator[None]:
    """Redis rewrites its append-only file each time it has doubled: with nothing draining the
    queue, every few seconds of load, landing at random in the measurements. Off meanwhile
    (appending, and its fsync every second, stay on)."""
    setting = connection.config_get("auto-aof-rewrite-percentage")["auto-aof-rewrite-percentage"]
    connection.config_set("auto-aof-rewrite-percentage", 0)
    try:
        yield
    finally:
        connection.config_set("auto-aof-rewrite-percentage", setting)
