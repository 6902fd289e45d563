"""``ghapp serve``: Redis (embedded unless REDIS_URL is set), the web process and N workers.

Each child runs in its own process group and dies with this process; a child that exits on its
own is started again; SIGINT or SIGTERM stops all of them, gracefully (a second one: at once,
the interrupted jobs run again at the next start), then for good. Children
get their secrets (the App's key, the webhook secret, the Redis URL) on a pipe, never in their
environment.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ghapp.core.child_processes import signal_on_parent_death
from ghapp.core.process_secrets import handoff, is_secret, withheld
from ghapp.core.redis_connection import describe
from ghapp.core.settings import Settings
from ghapp.embedded_redis import URL_FILE, EmbeddedRedis

log = logging.getLogger("ghapp.serve")
GRACE_SECONDS = 30  # as on Heroku: SIGTERM, then SIGKILL 30 s later
RESTART_DELAY = 1.0
STARTUP_SECONDS = 5.0  # a child that exits sooner than this by itself is misconfigured


@dataclass
class Child:
    name: str
    argv: list[str]
    env: Mapping[str, str]
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    output: IO[bytes] | None = None  # default: this process's own stdout and stderr
    process: subprocess.Popen[bytes] | None = field(default=None)
    started_at: float = 0.0

    def start(self) -> None:
        env, secrets_fd = handoff(self.env, self.secrets)
        try:
            self.process = subprocess.Popen(
                self.argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self.output,
                stderr=subprocess.STDOUT if self.output else None,
                start_new_session=True,
                preexec_fn=signal_on_parent_death(signal.SIGTERM),
                pass_fds=(secrets_fd,),
            )
        finally:
            os.close(secrets_fd)
        self.started_at = time.monotonic()
        log.info("started %s (pid %s)", self.name, self.process.pid)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)


class Stop(Exception):
    pass


class StopNow(Exception):
    """A second SIGINT or SIGTERM while stopping: kill everything at once."""


class ChildFailed(Exception):
    pass


def _raise_stop(signum: int, frame: object) -> None:
    raise Stop


def _raise_stop_now(signum: int, frame: object) -> None:
    raise StopNow


def descendants(pid: int) -> set[int]:
    """The processes ``pid`` started, and theirs, as Linux's /proc tells (none elsewhere)."""
    children: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    with open(f"/proc/{entry.name}/stat") as stat:
                        parent = int(stat.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue  # it ended meanwhile
                children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def kill_all(running: list[Child]) -> None:
    """SIGKILL every child now, with what it started (a worker's job runs in a process of its
    own session): their jobs run again at the next start."""
    for child in running:
        if child.process is not None:
            below = descendants(child.process.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGKILL)
            for pid in below:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
    for child in running:
        if child.process is not None:
            child.process.wait()


def base_url(settings: Settings) -> str:
    """Where this machine's users reach the web process (PUBLIC_URL when set)."""
    if settings.public_url:
        return settings.public_url
    host = "localhost" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}"


def where(settings: Settings, data_dir: Path) -> list[str]:
    """What ``ghapp serve`` says once it answers: its addresses, and how to reach its Redis
    (never a password: the embedded one's URL is read from its file by the command shown)."""
    base = base_url(settings)
    dashboard = (
        "Basic auth, any user name, the password DASHBOARD_PASSWORD"
        if settings.dashboard_password
        else "off: set DASHBOARD_PASSWORD to turn it on"
    )
    metrics = "bearer token METRICS_TOKEN" if settings.metrics_token else "open: set METRICS_TOKEN"
    if settings.redis_url:
        redis = f'RQ_REDIS_URL="$REDIS_URL" rq info   (Redis at {describe(settings.redis_url)})'
    else:
        url_file = shlex.quote(str(data_dir / "redis" / URL_FILE))
        redis = (
            f'RQ_REDIS_URL="$(cat {url_file})" rq info   (the embedded Redis; its URL holds its '
            "password: kept off command lines)"
        )
    return [
        f"webhook:    {base}/webhook",
        f"dashboard:  {base}/dashboard ({dashboard})",
        f"metrics:    {base}/metrics ({metrics})",
        f"Redis:      {redis}",
        "deliveries: ghapp deliveries; run a push again: ghapp retry DELIVERY; Ctrl-C stops",
    ]


def answers(settings: Settings) -> bool:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "") else settings.host
    host = "::1" if host == "::" else host
    try:
        with socket.create_connection((host, settings.port), timeout=0.2):
            return True
    except OSError:
        return False


def children(settings: Settings, env: Mapping[str, str], secrets: Mapping[str, str]) -> list[Child]:
    command = [sys.executable, "-m", "ghapp"]
    web = Child("web", [*command, "web"], env, secrets)
    workers = [
        Child(f"worker-{n + 1}", [*command, "worker"], env, secrets)
        for n in range(settings.workers)
    ]
    return [web, *workers]


def stop_all(running: list[Child], grace: float = GRACE_SECONDS) -> None:
    for child in running:
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in running:
        if child.process is None:
            continue
        try:
            child.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s: killing it", child.name, grace)
        try:
            os.killpg(child.process.pid, signal.SIGKILL)  # anything it left in its group
        except ProcessLookupError:
            pass
        child.process.wait()


def serve(settings: Settings, *, data_dir: Path, env: Mapping[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    secrets = {**withheld(), **{k: v for k, v in env.items() if is_secret(k)}}
    env = {k: v for k, v in env.items() if not is_secret(k)}
    embedded: EmbeddedRedis | None = None
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    running: list[Child] = []
    status = 0
    try:
        if not settings.redis_url:
            embedded = EmbeddedRedis(data_dir / "redis")
            secrets["REDIS_URL"] = embedded.start()
            log.info("embedded Redis running, data in %s", data_dir / "redis")
        # The workers hide it from the processing command, wherever it is (Redis's files).
        env["GHAPP_DATA_DIR"] = str(data_dir.resolve())
        running = children(settings, env, secrets)
        for child in running:
            child.start()
        announced = False
        while True:
            time.sleep(0.5)
            if not announced and answers(settings):
                announced = True
                log.info("ghapp serving with %s worker(s)", settings.workers)
                for line in where(settings, data_dir):
                    log.info("%s", line)
            if embedded is not None and embedded.process is not None:
                redis_status = embedded.process.poll()
                if redis_status is not None:
                    raise ChildFailed(
                        f"the embedded Redis exited (status {redis_status}): see "
                        f"{data_dir / 'redis' / 'redis.log'}"
                    )
            for child in running:
                if not child.alive():
                    assert child.process is not None
                    returncode = child.process.returncode
                    # Exiting by itself right after start means misconfigured: do not loop.
                    # Killed by a signal (the OOM killer, kill -9), it is started again.
                    if returncode >= 0 and time.monotonic() - child.started_at < STARTUP_SECONDS:
                        raise ChildFailed(
                            f"{child.name} exited at start with status "
                            f"{child.process.returncode}: see its message above"
                        )
                    log.warning(
                        "%s exited with status %s: starting it again",
                        child.name,
                        child.process.returncode,
                    )
                    time.sleep(RESTART_DELAY)
                    child.start()
    except Stop:
        log.info("stopping: running jobs get SHUTDOWN_GRACE seconds to end (Ctrl-C again: now)")
    except ChildFailed as exc:
        log.error("%s; stopping", exc)
        status = 1
    finally:
        signal.signal(signal.SIGINT, _raise_stop_now)
        signal.signal(signal.SIGTERM, _raise_stop_now)
        try:
            stop_all(running)
        except StopNow:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            log.warning("stopping at once: the interrupted jobs run again at the next start")
            kill_all(running)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if embedded is not None:
            embedded.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    log.info("stopped")
    return status
