"""A raw-socket HTTP/1.1 client, for what ordinary clients never send: a Content-Length that
lies, a body cut short, a connection stalled or half-closed in the middle of a request."""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest


def connect(url: str, timeout: float = 5) -> socket.socket:
    """A TCP connection to the host and port of ``url``."""
    address = urlsplit(url)
    return socket.create_connection((address.hostname, address.port), timeout=timeout)


def request_head(url: str, method: str, target: str, headers: Mapping[str, str]) -> bytes:
    """A request line, ``Host`` (from ``url``) and ``headers`` as given, in their order: nothing
    is checked or added, a Content-Length may lie."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {urlsplit(url).netloc}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def exchange(url: str, data: bytes, *, stall: float) -> bytes:
    """Send ``data`` (a request head and as much of a body as wanted) on a connection of its own
    and read the answer until the server closes.

    Waits ``stall`` seconds for an early answer, then half-closes our side (no more body is
    coming). Fails if the server has neither answered nor closed 10 s after that.
    """
    with connect(url) as sock:
        sock.sendall(data)
        received = b""
        if stall:
            sock.settimeout(stall)
            with contextlib.suppress(TimeoutError):
                received = sock.recv(65536)
        if not received:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:  # the server has closed already
                pass
        sock.settimeout(10)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        except TimeoutError:
            pytest.fail(f"no answer and no close 10 s after the client stopped: {received!r}")
    return received


@dataclass(frozen=True)
class RawAnswer:
    status: int
    head: bytes  # the status line and headers, without the blank line
    body: bytes


def parse_answer(received: bytes) -> RawAnswer | None:
    """The status, head and body of what :func:`exchange` received (None: the server closed
    without answering); fails the test if it is not an HTTP/1.x answer."""
    if not received:
        return None
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", received)
    assert match, received[:300]
    head, _, body = received.partition(b"\r\n\r\n")
    return RawAnswer(int(match.group(1)), head, body)
