"""What end-to-end tests share: an isolated Redis, child processes, signed posts, polling."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
import requests
from rq.job import Job, JobStatus

from ghapp.local import wait_until
from webapp.deliveries import PushJob, signature_for

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout``."""
    try:
        return wait_until(check, timeout, what)
    except TimeoutError as exc:
        raise AssertionError(str(exc)) from None


def healthy(url: str) -> bool:
    """Whether the web process at ``url`` answers its health check."""
    try:
        return requests.get(url + "/healthz", timeout=1).ok
    except requests.RequestException:
        return False


def claim_empty_db(url: str) -> int:
    """A database number on a shared server that is empty now, claimed for this run."""
    claim = f"ghapp-test-claim:{uuid.uuid4().hex}"
    for db in range(15, 0, -1):
        client = redis.Redis.from_url(url, db=db)
        if client.dbsize() == 0 and client.set(claim, "1", nx=True, ex=3600):
            if client.dbsize() == 1:
                client.delete(claim)
                return db
            client.delete(claim)
    raise RuntimeError(f"no empty database on {url} to run the tests in")


def with_db(url: str, db: int) -> str:
    client = redis.Redis.from_url(url)
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs.get('host', '127.0.0.1')}:{kwargs.get('port', 6379)}/{db}"


class Process:
    """A child process whose output goes to a log file, stopped with SIGTERM then SIGKILL."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], cwd: Path, logs: Path):
        self.name = name
        self.log_path = logs / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.alive():
            os.killpg(self.popen.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        code = self.popen.wait()
        self._log.close()
        return code

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")


def ghapp(command: list[str]) -> list[str]:
    return [sys.executable, "-m", "ghapp", *command]


def child_env(settings: Mapping[str, str]) -> dict[str, str]:
    """The test process's environment without any ghapp setting of its own, plus ``settings``."""
    own = {
        "GITHUB_APP_ID",
        "GITHUB_PRIVATE_KEY",
        "GITHUB_PRIVATE_KEY_PATH",
        "GITHUB_WEBHOOK_SECRET",
        "GITHUB_API_URL",
        "GITHUB_URL",
        "REDIS_URL",
        "PORT",
        "PROCESS_COMMAND",
        "PROCESSOR",
        "PUSH_BRANCHES",
        "JOB_TIMEOUT",
        "WORKERS",
        "TOKEN_CACHE_KEY",
        "HOST",
        "WEB_CONCURRENCY",
    }
    env = {k: v for k, v in os.environ.items() if k not in own}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    # The installed commands (ghapp, gunicorn) on PATH, as on a deployed machine.
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(filter(None, [bin_dir, env.get("PATH")]))
    env.update(settings)
    return env


def signed_post(
    url: str,
    body: bytes | dict[str, Any],
    *,
    event: str = "push",
    secret: bytes | None = b"test-secret",
    delivery: str | None = None,
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
) -> requests.Response:
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    sent = {
        "Content-Type": content_type,
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "User-Agent": "GitHub-Hookshot/test",
    }
    if secret is not None:
        sent["X-Hub-Signature-256"] = signature_for(raw, secret)
    sent.update(headers or {})
    return requests.post(url, data=raw, headers=sent, timeout=30)


def signed_head(
    url: str, body: bytes, *, content_length: int | None = None, extra: str = ""
) -> bytes:
    """The head of a ping to ``url``'s webhook, signed for ``body`` with the tests' secret, as
    raw bytes for tests that speak HTTP on a socket themselves."""
    return (
        "POST /webhook HTTP/1.1\r\n"
        f"Host: {urlsplit(url).netloc}\r\n"
        "Content-Type: application/json\r\n"
        "X-GitHub-Event: ping\r\n"
        f"X-GitHub-Delivery: {uuid.uuid4()}\r\n"
        f"X-Hub-Signature-256: {signature_for(body, b'test-secret')}\r\n"
        f"Content-Length: {len(body) if content_length is None else content_length}\r\n"
        f"{extra}\r\n"
    ).encode()


def wait_job(connection: redis.Redis, job_id: str, timeout: float = 30) -> Job:
    """The job once it has finished or failed."""

    def done() -> Job | None:
        job = Job.fetch(job_id, connection=connection)
        return job if job.get_status() in (JobStatus.FINISHED, JobStatus.FAILED) else None

    return wait_for(done, timeout, f"job {job_id} to end")


def failure_text(job: Job) -> str:
    result = job.latest_result()
    return str(result.exc_string if result else "")


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie awaiting its reaper is not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def command_lines() -> dict[int, bytes]:
    """Every live process's command line, by pid."""
    lines = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and running(int(entry.name)):
            try:
                lines[int(entry.name)] = (entry / "cmdline").read_bytes()
            except OSError:
                pass  # it ended meanwhile
    return lines


def push_job(pushed_at: int = 1_700_000_000, repository: str = "octo-org/queued") -> PushJob:
    """A push to ``repository``'s main branch, of a new delivery and a made-up commit."""
    return PushJob(
        delivery=str(uuid.uuid4()),
        installation_id=7,
        repository_id=42,
        repository=repository,
        clone_url=f"https://github.com/{repository}.git",
        ref="refs/heads/main",
        before="0" * 40,
        sha=uuid.uuid4().hex + "0" * 8,
        pushed_at=pushed_at,
    )


def process_children() -> dict[int, list[int]]:
    """Each running process's children, by parent pid, as Linux's /proc tells it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # it ended meanwhile
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    return children


class HookReceiver:
    """A webhook endpoint on loopback recording every delivery; with ``busy_first`` it answers
    503 to the first one (a server having a bad moment), 200 to the others."""

    def __init__(self, busy_first: bool = False) -> None:
        from werkzeug.serving import make_server

        self.busy_first = busy_first
        self.received: list[tuple[dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}/webhook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        from werkzeug.wrappers import Request, Response

        request = Request(environ)
        with self._lock:
            self.received.append((dict(request.headers.items()), request.get_data()))
            busy = self.busy_first and len(self.received) == 1
        answer = Response("busy", status=503) if busy else Response("ok")
        return answer(environ, start_response)

    def events(self, name: str) -> list[tuple[dict[str, str], bytes]]:
        """The deliveries of one event, oldest first."""
        with self._lock:
            return [(h, b) for h, b in self.received if h.get("X-Github-Event") == name]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
