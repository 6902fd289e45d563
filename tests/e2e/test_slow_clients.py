"""The web process is not a way in: no control socket for local processes to stop it through,
and clients that send slowly (slowloris) neither keep GitHub's deliveries from being answered
nor hold connections for longer than the read timeout."""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from ghapp.simulator import GitHubSimulator
from tests.e2e.conftest import Stack, start_stack
from tests.support import process_children, signed_head, wait_for
from webapp.deliveries import signature_for
from webapp.server import BODY_TIMEOUT, HEAD_TIMEOUT

TRICKLE = 0.5  # seconds between two bytes of a slow client
READ_TIMEOUT = max(HEAD_TIMEOUT, BODY_TIMEOUT)  # the server's deadlines (equal today)
ANSWER_WITHIN = 10.0  # GitHub's limit for an answer
PING = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()


@pytest.fixture(scope="module")
def web(
    redis_url: str,
    app_key: tuple[bytes, bytes],
    simulator: GitHubSimulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """The web process alone (pings need no worker), with a HOME of its own and no
    XDG_RUNTIME_DIR: where gunicorn would open its control socket is known."""
    home = tmp_path_factory.mktemp("slow-clients")
    (home / "home").mkdir()
    stack = start_stack(
        redis_url=redis_url,
        app_key=app_key,
        simulator=simulator,
        home=home,
        overrides={"HOME": str(home / "home"), "XDG_RUNTIME_DIR": ""},
        workers=0,
    )
    yield stack
    stack.stop()


def ping(stack: Stack) -> tuple[int, float]:
    """Post a correctly signed ping as GitHub does: its status and how long the answer took."""
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": signature_for(PING, b"test-secret"),
        "User-Agent": "GitHub-Hookshot/test",
    }
    started = time.monotonic()
    try:
        answer = requests.post(stack.webhook, data=PING, headers=headers, timeout=ANSWER_WITHIN)
    except requests.Timeout:
        return 0, time.monotonic() - started
    return answer.status_code, time.monotonic() - started


def delivery_head(stack: Stack, body: bytes) -> bytes:
    """The head of a signed ping whose body is ``body``."""
    return signed_head(stack.url, body)


class SlowClient:
    """A raw connection that sends ``at_once``, then ``trickle`` one byte every TRICKLE s."""

    def __init__(self, address: tuple[str, int], at_once: bytes, trickle: bytes) -> None:
        self.address = address
        self.at_once = at_once
        self.trickle = trickle
        self.received = b""
        self.connect()

    def connect(self) -> None:
        self.sock = socket.create_connection(self.address, timeout=5)
        self.sock.sendall(self.at_once)
        self.sock.setblocking(False)
        self.opened = time.monotonic()
        self.sent = 0
        self.next_byte = self.opened + TRICKLE
        self.closed_after: float | None = None  # seconds from opening to the server's close

    def step(self, now: float) -> None:
        """Read what the server sent; send the next byte when it is due."""
        if self.closed_after is not None:
            return
        try:
            while select.select([self.sock], [], [], 0)[0]:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionResetError
                self.received += chunk
            if now >= self.next_byte and self.sent < len(self.trickle):
                self.sock.send(self.trickle[self.sent : self.sent + 1])
                self.sent += 1
                self.next_byte = now + TRICKLE
        except OSError:
            self.closed_after = now - self.opened
            self.sock.close()

    def close(self) -> None:
        self.sock.close()


class SlowClients:
    """Slow clients driven by a thread of their own; with ``reconnect``, each one the server
    cut off connects again at once, as an attacker would."""

    def __init__(self, clients: list[SlowClient], *, reconnect: bool) -> None:
        self.clients = clients
        self.reconnect = reconnect
        self.cut_off = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stopping.wait(0.02):
            now = time.monotonic()
            for client in self.clients:
                client.step(now)
                if client.closed_after is not None and self.reconnect:
                    self.cut_off += 1
                    with contextlib.suppress(OSError):  # refused: tried again next time
                        client.connect()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        for client in self.clients:
            client.close()

    def __enter__(self) -> SlowClients:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def slowloris(stack: Stack, count: int) -> list[SlowClient]:
    """``count`` clients, half of them sending a request head byte by byte, half a body."""
    parts = urlsplit(stack.url)
    address = (str(parts.hostname), int(parts.port or 80))
    clients = []
    for n in range(count):
        if n % 2:
            head = f"POST /webhook HTTP/1.1\r\nHost: {parts.netloc}\r\n".encode()
            clients.append(SlowClient(address, head, b"X-GitHub-Event: ping\r\n" + b"a" * 1000))
        else:
            body = b'{"zen": "' + b" " * 10_000 + b'"}'
            clients.append(SlowClient(address, delivery_head(stack, body), body))
    return clients


def test_the_web_process_has_no_control_socket(web: Stack):
    home = Path(web.env["HOME"])
    default = home / ".gunicorn" / "gunicorn.ctl"  # gunicorn's default without XDG_RUNTIME_DIR
    assert ping(web)[0] == 200  # up and serving
    assert not default.exists()
    assert not (home / ".gunicorn").exists()
    with socket.socket(socket.AF_UNIX) as client, pytest.raises(FileNotFoundError):
        client.connect(str(default))
    # Nor anywhere else: no process of the web process (master or worker) listens on a Unix
    # socket. (/proc/<pid>/fd of the non-dumpable master is readable by root only.)
    workers = wait_for(
        lambda: [w for w in [process_children().get(web.web.pid, [])] if len(w) >= 2],
        20,
        "the web process's two workers",
    )[0]
    pids = [web.web.pid, *workers]
    try:
        inodes = {inode for pid in pids for inode in socket_inodes(pid)}
    except PermissionError:
        pytest.skip("the web process's descriptors are readable by root only")
    assert inodes, "the workers' own sockets were found"
    assert not inodes & listening_unix_sockets()


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def listening_unix_sockets() -> set[str]:
    """Inodes of the Unix sockets that accept connections (flag __SO_ACCEPTCON)."""
    inodes = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[3], 16) & 0x10000:
            inodes.add(fields[6])
    return inodes


@pytest.mark.parametrize("count", [4, 16])
def test_deliveries_are_answered_while_slow_clients_hold_connections(web: Stack, count: int):
    with SlowClients(slowloris(web, count), reconnect=True) as attack:
        wait_for(
            lambda: all(c.sent >= 2 for c in attack.clients), 10, "the slow clients to trickle"
        )
        for n in range(8):
            status, took = ping(web)
            what = f"ping {n + 1} of 8, {count} slow clients: {status or 'none'} after {took:.1f} s"
            assert status == 200, what
            assert took < ANSWER_WITHIN, what


def test_requests_that_do_not_arrive_in_time_are_cut_off(web: Stack):
    """Whether a client stops sending or trickles on, its request has READ_TIMEOUT seconds to
    arrive (head, then body): then it is answered 408 and its connection closed."""
    parts = urlsplit(web.url)
    address = (str(parts.hostname), int(parts.port or 80))
    body = b'{"zen": "' + b" " * 1000 + b'"}'
    head = delivery_head(web, body)
    cases = {
        "head, stalled": SlowClient(address, head[:40], b""),
        "head, trickling": SlowClient(address, head[:40], head[40:] + b"a" * 1000),
        "body, stalled": SlowClient(address, head + body[:100], b""),
        "body, trickling": SlowClient(address, head + body[:100], body[100:]),
    }
    with SlowClients(list(cases.values()), reconnect=False):
        wait_for(
            lambda: all(c.closed_after is not None for c in cases.values()),
            READ_TIMEOUT + 5,
            "the server to close every slow connection",
        )
    for name, client in cases.items():
        assert client.closed_after is not None
        assert READ_TIMEOUT - 1 <= client.closed_after <= READ_TIMEOUT + 3, (name, client)
        status_line = client.received.split(b"\r\n", 1)[0]
        assert status_line.startswith(b"HTTP/1.1 408 "), (name, client.received[:300])
        error = json.loads(client.received.split(b"\r\n\r\n", 1)[1])["error"]
        assert "not received within" in error
    assert ping(web)[0] == 200


def test_connections_past_the_bound_are_answered_503_until_slow_ones_are_cut_off(
    own_redis_url: str,
    app_key: tuple[bytes, bytes],
    simulator: GitHubSimulator,
    tmp_path: Path,
):
    """A worker holds at most ``worker_connections``: past it a delivery gets a 503 at once
    (GitHub records it failed, to be redelivered) instead of waiting; the read timeout frees
    the connections held by slow clients."""
    home = tmp_path / "stack"
    home.mkdir()
    stack = start_stack(
        redis_url=own_redis_url,
        app_key=app_key,
        simulator=simulator,
        home=home,
        overrides={"WEB_CONCURRENCY": "1", "GUNICORN_CMD_ARGS": "--worker-connections 4"},
        workers=0,
    )
    try:
        assert ping(stack)[0] == 200
        with SlowClients(slowloris(stack, 4), reconnect=False) as held:
            wait_for(lambda: all(c.sent >= 1 for c in held.clients), 10, "the slow clients")
            status, took = ping(stack)
            assert status == 503, (status, took)
            assert took < 2, (status, took)
            # The slow clients are cut off at their read timeout; deliveries are answered again.
            wait_for(lambda: ping(stack)[0] == 200, READ_TIMEOUT + 5, "a 200 after the cut-off")
            wait_for(
                lambda: all(c.closed_after is not None for c in held.clients), 3, "the cut-off"
            )
    finally:
        stack.stop()
