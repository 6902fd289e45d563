"""The relay against a local smee-style channel (SSE) and a local webhook: GitHub's bytes and
headers arrive, signatures verify, the stream is re-opened when it drops."""

from __future__ import annotations

import json
import logging
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ghapp import relay
from webapp.deliveries import BadSignature, signature_for, verify_signature

SECRET = b"relay-test-secret"
# What a connection does, step by step: bytes to write, a pause, the end of the stream (None),
# or DROP: the connection closed in the middle of a chunked stream.
DROP = "drop"
Step = bytes | float | str | None


def github_body(payload: dict[str, Any]) -> bytes:
    """The bytes GitHub sends: compact JSON, non-ASCII characters as they are."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def github_headers(body: bytes, event: str, delivery: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "user-agent": "GitHub-Hookshot/abc1234",
        "x-github-event": event,
        "x-github-delivery": delivery,
        "x-github-hook-id": "4242",
        "x-github-hook-installation-target-id": "99",
        "x-github-hook-installation-target-type": "integration",
        "x-hub-signature": "sha1=0000",
        "x-hub-signature-256": signature_for(body, SECRET),
    }


def smee_message(body: bytes, headers: dict[str, str], **extra: Any) -> bytes:
    """One SSE ``data`` value as smee.io writes it: JSON.stringify of the request's headers
    (and its own: host, x-forwarded-for...), ``body`` parsed, ``query`` and ``timestamp``."""
    message = {
        "host": "smee.io",
        "x-forwarded-for": "192.30.252.34",
        "x-forwarded-proto": "https",
        "connection": "close",
        "content-length": str(len(body)),
        **headers,
        "body": json.loads(body),
        "query": {},
        "timestamp": 1_700_000_000_000,
        **extra,
    }
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def sse(data: bytes, *, event: str | None = None, id: str | None = None, eol: bytes = b"\n"):
    lines = []
    if id is not None:
        lines.append(b"id: " + id.encode())
    if event is not None:
        lines.append(b"event: " + event.encode())
    lines.append(b"data: " + data)
    return eol.join(lines) + eol + eol


READY = b"id: 0\nevent: ready\ndata: {}\n\n"
PING = b"id: 1\nevent: ping\ndata: {}\n\n"


def logged(caplog: pytest.LogCaptureFixture, text: str, timeout: float = 10.0) -> None:
    """Wait until a line holding ``text`` is logged (the relay logs after the webhook answers)."""
    deadline = time.monotonic() + timeout
    while not any(text in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, f"never logged: {text}"
        time.sleep(0.02)


@dataclass
class Channel:
    """A smee-style channel on 127.0.0.1: each GET plays the next scripted connection."""

    url: str
    connections: queue.Queue[list[Step] | tuple[int, dict[str, str]]]
    requests: list[dict[str, str]] = field(default_factory=list)
    chunked: bool = False


@dataclass
class Receiver:
    url: str
    deliveries: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    arrived: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))

    def wait(self, count: int, timeout: float = 10.0) -> None:
        for _ in range(count):
            assert self.arrived.acquire(timeout=timeout), f"{len(self.deliveries)} arrived"


def serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def channel() -> Iterator[Channel]:
    state = Channel("", queue.Queue())

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            state.requests.append(
                {k.lower(): v for k, v in self.headers.items()} | {"path": self.path}
            )
            try:
                script = state.connections.get(timeout=5)
            except queue.Empty:
                self.send_error(503)
                return
            if isinstance(script, tuple):
                status, headers = script
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if state.chunked:
                self.protocol_version = "HTTP/1.1"
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            if state.chunked:
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
            self.end_headers()
            for step in script:
                if step == DROP:
                    self.close_connection = True
                    return
                if step is None:
                    break
                if isinstance(step, float):
                    time.sleep(step)
                    continue
                assert isinstance(step, bytes)
                if state.chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(step), step))
                else:
                    self.wfile.write(step)
                self.wfile.flush()
            if state.chunked:
                self.wfile.write(b"0\r\n\r\n")
            self.close_connection = True

    server, url = serve(Handler)
    state.url = url + "/channel"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            headers = dict(self.headers.items())
            try:
                verify_signature(body, headers.get("X-Hub-Signature-256"), [SECRET])
                status = 202
            except BadSignature:
                status = 401
            state.deliveries.append((headers, body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            state.arrived.release()

    server, url = serve(Handler)
    state.url = url + "/webhook"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def run() -> Iterator[Callable[[str, str], threading.Thread]]:
    """Start ``run_relay`` in a thread; stop it (and check that it stops) after the test."""
    started: list[tuple[threading.Thread, threading.Event]] = []

    def start(source: str, target: str) -> threading.Thread:
        stop = threading.Event()
        thread = threading.Thread(
            target=relay.run_relay, args=(source, target), kwargs={"stop": stop}, daemon=True
        )
        thread.start()
        started.append((thread, stop))
        return thread

    yield start
    for thread, stop in started:
        stop.set()
        thread.join(5)
        assert not thread.is_alive(), "the relay did not stop when asked"


def test_github_bytes_and_headers_arrive_and_verify_across_a_dropped_stream(
    channel: Channel, receiver: Receiver, run: Callable[[str, str], threading.Thread], caplog
) -> None:
    caplog.set_level(logging.INFO, logger="ghapp.relay")
    first = github_body(
        {
            "ref": "refs/heads/main",
            "after": "a" * 40,
            "commits": [{"message": 'Café ✓ "q"'}],
            "repository": {"full_name": "octo/hello", "size": 0, "private": True},
            "installation": {"id": 7},
            "deleted": False,
            "base_ref": None,
        }
    )
    second = github_body({"action": "rerequested", "check_suite": {"id": 5, "head_sha": "b" * 40}})
    first_headers = github_headers(first, "push", "d1-0001")
    second_headers = github_headers(second, "check_suite", "d1-0002")
    message = sse(smee_message(second, second_headers), id="3", eol=b"\r\n")
    channel.connections.put(
        [
            READY,
            b": a comment, as a keep-alive\n",
            PING,
            b"a line without a colon\n\n",  # a field named by the whole line: ignored
            b"data: {not json\n\n",
            b'data: ["not", "an object"]\n\n',
            sse(smee_message(first, first_headers), id="2"),
            None,  # the stream drops
        ]
    )
    channel.connections.put([READY, message[:7], 0.05, message[7:-1], 0.05, message[-1:], 5.0])
    run(channel.url, receiver.url)
    receiver.wait(2)

    (got_first_headers, got_first), (got_second_headers, got_second) = receiver.deliveries
    assert got_first == first
    assert got_second == second
    for got, sent, body in (
        (got_first_headers, first_headers, first),
        (got_second_headers, second_headers, second),
    ):
        verify_signature(body, got["X-Hub-Signature-256"], [SECRET])
        for name, value in sent.items():
            assert got[relay.HEADER_NAMES[name]] == value
        # smee's own headers stay behind; the length is the body's.
        assert "X-Forwarded-For" not in got
        assert got["Host"] == receiver.url.split("/")[2]
        assert got["Content-Length"] == str(len(body))

    assert channel.requests[0]["accept"] == "text/event-stream"
    assert "last-event-id" not in channel.requests[0]
    assert channel.requests[1]["last-event-id"] == "2"

    logged(caplog, "relay: check_suite delivery d1-0002 forwarded: 202")
    lines = [r.getMessage() for r in caplog.records]
    assert "relay: push delivery d1-0001 forwarded: 202" in lines
    assert "relay: check_suite delivery d1-0002 forwarded: 202" in lines
    assert sum("forwarded" in line for line in lines) == 2
    assert any("not a smee-style JSON object" in line for line in lines)
    text = caplog.text
    assert "Café" not in text
    assert "refs/heads/main" not in text
    assert first_headers["x-hub-signature-256"] not in text
    assert first_headers["x-hub-signature-256"].removeprefix("sha256=") not in text


def test_a_chunked_stream_is_read_as_it_comes(
    channel: Channel, receiver: Receiver, run: Callable[[str, str], threading.Thread]
) -> None:
    channel.chunked = True
    body = github_body({"zen": "Keep it logically awesome.", "hook_id": 1})
    headers = github_headers(body, "ping", "d2-0001")
    message = sse(smee_message(body, headers), id="1")
    # The delivery must arrive while the stream stays open.
    channel.connections.put([READY, message[:20], 0.05, message[20:], 30.0])
    run(channel.url, receiver.url)
    receiver.wait(1, timeout=5)
    assert receiver.deliveries[0][1] == body


def test_a_chunked_stream_broken_mid_message_is_reopened(
    channel: Channel, receiver: Receiver, run: Callable[[str, str], threading.Thread]
) -> None:
    channel.chunked = True
    body = github_body({"zen": "Half measures are as bad as nothing at all."})
    message = sse(smee_message(body, github_headers(body, "ping", "d2-0002")), id="9")
    channel.connections.put([READY, message[:30], DROP])
    channel.connections.put([READY, b"retry: 50\n\n", message, 30.0])
    run(channel.url, receiver.url)
    receiver.wait(1)
    assert [got for _, got in receiver.deliveries] == [body]
    assert channel.requests[1]["last-event-id"] == "0"


def test_the_raw_body_is_forwarded_when_the_channel_keeps_it(
    channel: Channel, receiver: Receiver, run: Callable[[str, str], threading.Thread]
) -> None:
    # Bytes no re-serialisation gives back: spaces, an escaped "<", a float written 1.0.
    body = b'{ "action": "opened", "title": "a \\u003c b", "score": 1.0 }'
    headers = github_headers(body, "issues", "d3-0001")
    as_text = smee_message(body, headers, rawdata=body.decode())
    as_buffer = smee_message(body, headers, rawdata={"type": "Buffer", "data": list(body)})
    channel.connections.put([READY, sse(as_text), sse(as_buffer), 30.0])
    run(channel.url, receiver.url)
    receiver.wait(2)
    assert [got for _, got in receiver.deliveries] == [body, body]
    for got_headers, got in receiver.deliveries:
        verify_signature(got, got_headers["X-Hub-Signature-256"], [SECRET])


def test_without_a_raw_body_a_reencoded_payload_cannot_verify_and_the_line_says_so(
    channel: Channel, receiver: Receiver, run: Callable[[str, str], threading.Thread], caplog
) -> None:
    """smee.io's limit, stated in the relay's docstring: the body smee parsed is forwarded as
    JSON.stringify writes it, which differs from GitHub's bytes when those escaped a character."""
    caplog.set_level(logging.INFO, logger="ghapp.relay")
    body = b'{"title":"a \\u003c b"}'
    headers = github_headers(body, "issues", "d4-0001")
    channel.connections.put([READY, sse(smee_message(body, headers)), 30.0])
    run(channel.url, receiver.url)
    receiver.wait(1)
    assert receiver.deliveries[0][1] == b'{"title":"a < b"}'
    logged(caplog, "issues delivery d4-0001 forwarded: 401 (the signature did not verify")


def test_a_redirect_on_the_channels_host_is_followed(
    channel: Channel, receiver: Receiver, run: Callable[[str, str], threading.Thread]
) -> None:
    body = github_body({"ok": True})
    channel.connections.put((307, {"Location": "/channel-moved"}))
    channel.connections.put([READY, sse(smee_message(body, github_headers(body, "x", "d5"))), 30.0])
    run(channel.url, receiver.url)
    receiver.wait(1)
    assert channel.requests[1]["path"] == "/channel-moved"


@pytest.mark.parametrize(
    "location",
    ["http://example.invalid/channel", "http://localhost:1/channel", "ftp://127.0.0.1/channel"],
)
def test_a_redirect_off_the_channels_host_is_refused(channel: Channel, location: str) -> None:
    channel.connections.put((302, {"Location": location}))
    with pytest.raises(relay.RelayError, match="redirect"):
        relay.run_relay(channel.url, "http://127.0.0.1:9/webhook", stop=threading.Event())
    assert len(channel.requests) == 1


def test_a_channel_that_is_not_an_event_stream_is_refused_at_the_start(channel: Channel) -> None:
    channel.connections.put((404, {}))
    with pytest.raises(relay.RelayError, match="answered 404"):
        relay.run_relay(channel.url, "http://127.0.0.1:9/webhook")


def test_oversized_bodies_are_skipped(
    channel: Channel,
    receiver: Receiver,
    run: Callable[[str, str], threading.Thread],
    monkeypatch: pytest.MonkeyPatch,
    caplog,
) -> None:
    caplog.set_level(logging.INFO, logger="ghapp.relay")
    monkeypatch.setattr(relay, "MAX_BODY_BYTES", 100)
    big = github_body({"padding": "x" * 200})
    small = github_body({"ok": 1})
    channel.connections.put(
        [
            READY,
            sse(smee_message(big, github_headers(big, "push", "big-1"))),
            sse(smee_message(small, github_headers(small, "push", "small-1"))),
            30.0,
        ]
    )
    run(channel.url, receiver.url)
    receiver.wait(1)
    assert [body for _, body in receiver.deliveries] == [small]
    logged(caplog, "push delivery big-1 is larger than")


def test_a_webhook_that_does_not_answer_is_logged_and_the_relay_goes_on(
    channel: Channel,
    receiver: Receiver,
    run: Callable[[str, str], threading.Thread],
    monkeypatch: pytest.MonkeyPatch,
    caplog,
) -> None:
    monkeypatch.setattr(relay, "FORWARD_ATTEMPTS", 1)
    body = github_body({"ok": 1})
    channel.connections.put(
        [READY, sse(smee_message(body, github_headers(body, "push", "d6"))), 30.0]
    )
    run(channel.url, "http://127.0.0.1:9/webhook")  # the discard port: nothing listens
    logged(caplog, "push delivery d6 could not be forwarded: nothing answers")


def test_stop_ends_a_relay_waiting_on_a_silent_channel(channel: Channel, receiver: Receiver):
    channel.connections.put([READY, 60.0])
    stop = threading.Event()
    thread = threading.Thread(
        target=relay.run_relay, args=(channel.url, receiver.url), kwargs={"stop": stop}
    )
    thread.start()
    deadline = time.monotonic() + 5
    while not channel.requests:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.2)
    began = time.monotonic()
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - began < 2


def test_start_relay_thread_checks_first_then_runs(channel: Channel, receiver: Receiver) -> None:
    with pytest.raises(relay.RelayError, match="loopback"):
        relay.start_relay_thread(channel.url, "http://192.0.2.1/webhook")
    body = github_body({"ok": 1})
    channel.connections.put(
        [READY, sse(smee_message(body, github_headers(body, "push", "d7"))), 30.0]
    )
    thread, stop = relay.start_relay_thread(channel.url, receiver.url)
    receiver.wait(1)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()


def test_python_m_ghapp_relay_runs_as_a_child_and_stops_on_sigterm(
    channel: Channel, receiver: Receiver
) -> None:
    body = github_body({"ok": 1})
    channel.connections.put(
        [READY, sse(smee_message(body, github_headers(body, "push", "d8"))), 60.0]
    )
    child = subprocess.Popen(
        [sys.executable, "-m", "ghapp.relay", channel.url, "--target", receiver.url],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        receiver.wait(1)
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=10)
    finally:
        child.kill()
    assert child.returncode == 0, err
    assert "push delivery d8 forwarded: 202" in err


def test_python_m_ghapp_relay_refuses_a_remote_target() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ghapp.relay",
            "https://smee.io/x",
            "--target",
            "http://192.0.2.1/webhook",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "not a loopback address" in done.stderr
