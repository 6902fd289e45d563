"""The web process's HTTP server: uvicorn's gunicorn worker, with a deadline for each request.

A client that sends its request slowly holds a connection, not a worker. Each request must
arrive whole in time (its head within ``HEAD_TIMEOUT`` seconds, then its body within
``BODY_TIMEOUT``; GitHub sends a delivery at once) or the connection is answered 408 and closed,
so stalled requests cannot pile up; a head over ``MAX_HEAD`` bytes is refused with 431; a worker
holds at most gunicorn's ``worker_connections`` connections or requests at once, and answers 503
past that.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

HEAD_TIMEOUT = 5.0  # request line and headers, from the connection (or the request's first byte)
BODY_TIMEOUT = 5.0  # the whole body, from the end of the head: 25 MiB at 5 MiB/s
MAX_HEAD = 64 * 1024  # GitHub's are about 1 KiB


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools), with a deadline for each request to arrive in
    full and a limit on the size of its head. Keep-alive idling is uvicorn's own timeout."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.deadline: asyncio.TimerHandle | None = None
        self.in_head = True
        self.head_size = 0
        self.boundaries = 0  # heads and requests received in full on this connection
        super().connection_made(transport)
        self.arm(HEAD_TIMEOUT)

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        boundaries = self.boundaries
        super().data_received(data)
        # Bytes of a head still incomplete. A read in which a head or a request ended is not
        # counted (it holds a body, or the end of one), so a head may overshoot MAX_HEAD by one
        # read at most.
        if self.in_head and boundaries == self.boundaries and not self.transport.is_closing():
            self.head_size += len(data)
            if self.head_size > MAX_HEAD:
                self.refuse(431, f"request head larger than {MAX_HEAD // 1024} KiB")

    def eof_received(self) -> bool | None:  # type: ignore[override]  # asyncio allows True
        """The client is done sending: a request it sent in full is still answered (then the
        connection closes), and so is one whose body ends short of its Content-Length (the app
        reads what came, and answers 400)."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return None  # nothing to answer: close
        if not self.in_head and cycle.more_body:
            self.disarm()
            cycle.more_body = False
            cycle.message_event.set()
        cycle.keep_alive = False
        return True

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.deadline is None:  # the next request on a kept-alive connection
            self.arm(HEAD_TIMEOUT)

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_size = 0
        self.boundaries += 1
        self.arm(BODY_TIMEOUT)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.disarm()
        self.in_head = True
        self.boundaries += 1
        super().on_message_complete()

    def arm(self, seconds: float) -> None:
        self.disarm()
        self.deadline = self.loop.call_later(seconds, self.expired)

    def disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def expired(self) -> None:
        self.deadline = None
        part = "head" if self.in_head else "body"
        limit = HEAD_TIMEOUT if self.in_head else BODY_TIMEOUT
        self.refuse(408, f"request {part} not received within {limit:g} s")

    def refuse(self, status: int, message: str) -> None:
        """Answer ``status`` unless a response is under way, and close the connection."""
        self.disarm()
        if self.transport.is_closing():
            return
        cycle = self.cycle  # in a head: the connection's previous request, if any
        if self.in_head:
            may_answer = cycle is None or cycle.response_complete
        else:
            may_answer = cycle is not None and not cycle.response_started
        if may_answer:
            body = orjson.dumps({"status": "error", "error": message})
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n%s" % (status, REASONS[status], len(body), body)
            )
        peer = "{}:{}".format(*self.client) if self.client else "a client"
        self.logger.info("closing the connection of %s: %s", peer, message)
        self.transport.close()


REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class WebWorker(UvicornWorker):  # type: ignore[misc]  # uvicorn-worker ships no types
    """uvicorn's gunicorn worker, serving with ``DeadlineProtocol`` and gunicorn's
    ``worker_connections`` as uvicorn's bound on connections and requests."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "uvloop",
        "http": DeadlineProtocol,
        "ws": "none",  # no WebSocket upgrades: nothing here speaks it
        "server_header": False,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config.limit_concurrency = self.cfg.worker_connections
