"""The relay: GitHub's deliveries from a smee-style channel (Server-Sent Events) to the local
webhook, with the headers GitHub sent, so that their signatures verify.

Entry points: ``run_relay(source_url, target_url, *, stop=None)`` blocks until ``stop`` is set
(network errors never end it: it reconnects); ``check_urls`` raises ``RelayError`` on a bad
configuration without connecting; ``start_relay_thread`` runs the relay in a daemon thread for a
supervisor; ``python -m ghapp.relay SOURCE [--target URL]`` runs it as a child process (SIGTERM
stops it). ``default_target(port)`` is ``http://127.0.0.1:PORT/webhook``.

Bytes forwarded: a message's raw body when the channel keeps one (a ``rawdata``/``rawBody``
field: text, or a serialised Node ``Buffer``), byte for byte. Else (smee.io: it parses GitHub's
JSON and sends it again, with the request headers as lower-case keys, in one JSON object) the
``body`` value exactly as it is written in the message, i.e. ``JSON.stringify`` of the parsed
payload: the bytes smee-client forwards. GitHub sends compact JSON, so these are GitHub's bytes
and the signature verifies, unless the channel lost something in the parsing (an escape such
as ``\\u003c`` written back as ``<``, a float such as ``1.0`` written back as ``1``, a form-encoded
body): the webhook then answers 401 and the relay's line says so. Only ``Content-Type``,
``User-Agent``, ``X-GitHub-*`` and ``X-Hub-Signature*`` headers are forwarded (not smee's
``Host``, ``X-Forwarded-*``...); the query string is dropped.

The target must be a loopback address unless ``allow_remote_target``: deliveries hold private
repositories' data, and a relay is for a laptop; a redirect off the channel's host is never
followed, nor any redirect from the target. A message larger than ``MAX_MESSAGE_BYTES`` or a body
larger than ``MAX_BODY_BYTES`` (GitHub's cap) is skipped. One line is logged per delivery (event,
delivery id, status), never a body or a signature. smee.io keeps nothing: a delivery sent while
the relay is disconnected is lost (GitHub saw smee.io accept it); redeliver it from the App's
settings. ``Last-Event-ID`` is sent on reconnection when the channel gave ids.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import random
import re
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

log = logging.getLogger("ghapp.relay")

MAX_BODY_BYTES = 25 * 1024 * 1024  # GitHub caps a delivery's payload at 25 MB
# One SSE message holds the body, perhaps a raw copy of it, and the headers.
MAX_MESSAGE_BYTES = 2 * MAX_BODY_BYTES + 1024 * 1024
MAX_REDIRECTS = 5
CONNECT_TIMEOUT = 10.0
# smee.io pings every 30 s: a channel silent for this long is dead; reconnect.
READ_TIMEOUT = 90.0
FORWARD_TIMEOUT = (5.0, 60.0)
FORWARD_ATTEMPTS = 3  # when the local webhook cannot be reached (it may be starting)
INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 30.0
READ_SIZE = 64 * 1024
RAW_BODY_KEYS = ("rawdata", "rawBody")
HEADER_NAMES = {
    "content-type": "Content-Type",
    "user-agent": "User-Agent",
    "x-github-event": "X-GitHub-Event",
    "x-github-delivery": "X-GitHub-Delivery",
    "x-github-hook-id": "X-GitHub-Hook-ID",
    "x-github-hook-installation-target-id": "X-GitHub-Hook-Installation-Target-ID",
    "x-github-hook-installation-target-type": "X-GitHub-Hook-Installation-Target-Type",
    "x-github-enterprise-host": "X-GitHub-Enterprise-Host",
    "x-github-enterprise-version": "X-GitHub-Enterprise-Version",
    "x-hub-signature": "X-Hub-Signature",
    "x-hub-signature-256": "X-Hub-Signature-256",
}
MAX_HEADER_VALUE = 8 * 1024
_SAFE_LOG = re.compile(r"[^A-Za-z0-9._-]")
_BAD_HEADER_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_LINE_END = re.compile(rb"\r\n|\r|\n")


class RelayError(Exception):
    """The relay cannot run as configured; the message says what to change."""


class _Refused(Exception):
    """The channel answered, but not with an event stream (a status, a redirect off its host)."""


def default_target(port: int) -> str:
    return f"http://127.0.0.1:{port}/webhook"


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_urls(source_url: str, target_url: str, *, allow_remote_target: bool = False) -> None:
    """Raise RelayError unless the channel is an https URL (http on loopback) and the target an
    http(s) URL on loopback (anywhere with ``allow_remote_target``)."""
    source = urlsplit(source_url)
    if source.scheme not in ("http", "https") or not source.hostname:
        raise RelayError(
            f"the channel URL {source_url!r} is not an http(s) URL: "
            "give the channel's address, e.g. https://smee.io/CHANNEL"
        )
    if source.scheme == "http" and not _is_loopback(source.hostname):
        raise RelayError(
            f"the channel URL {source_url!r} is plain http: deliveries would cross the network "
            "unencrypted; use its https:// address"
        )
    target = urlsplit(target_url)
    if target.scheme not in ("http", "https") or not target.hostname:
        raise RelayError(
            f"the target URL {target_url!r} is not an http(s) URL: "
            "give the local webhook, e.g. http://127.0.0.1:3000/webhook"
        )
    if not allow_remote_target and not _is_loopback(target.hostname):
        raise RelayError(
            f"the target {target.hostname} is not a loopback address: the relay forwards only "
            "to this machine (127.0.0.1, ::1, localhost); allow another host explicitly"
        )


# --- Server-Sent Events ---------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    type: str  # "message" unless the channel named it ("ready", "ping"...)
    data: str
    id: str | None  # the stream's last event id once this event arrived
    oversized: bool = False  # its data was dropped: larger than the parser's limit


class SSEParser:
    """Server-Sent Events from the bytes of a stream, as the HTML standard parses them, with a
    bound on one event's size (an oversized event is reported, its data dropped)."""

    def __init__(self, limit: int = MAX_MESSAGE_BYTES) -> None:
        self.limit = limit
        self.last_id: str | None = None
        self.retry_ms: int | None = None
        self._pending = bytearray()
        self._after_cr = False
        self._skipping_line = False  # the rest of an over-long line is being dropped
        self._data: list[str] = []
        self._size = 0
        self._type = ""
        self._oversized = False
        self._first = True

    def feed(self, chunk: bytes) -> Iterator[Event]:
        if self._after_cr and chunk:
            # A "\r" ended the last chunk's line: a "\n" starting this one belongs to it.
            chunk = chunk.removeprefix(b"\n")
            self._after_cr = False
        # Only the new bytes are searched for line ends: a long line arriving in many chunks
        # costs linear time.
        scan = len(self._pending)
        self._pending += chunk
        if self._first:
            if len(self._pending) < 3 and b"\xef\xbb\xbf".startswith(self._pending):
                return
            if self._pending.startswith(b"\xef\xbb\xbf"):
                del self._pending[:3]
            self._first = False
            scan = 0
        start = 0
        while True:
            found = _LINE_END.search(self._pending, max(start, scan))
            if found is None:
                break
            line = bytes(self._pending[start : found.start()])
            start = found.end()
            if found.group() == b"\r" and start == len(self._pending):
                self._after_cr = True
            if self._skipping_line:
                self._skipping_line = False
                continue
            event = self._line(line.decode("utf-8", errors="replace"))
            if event is not None:
                yield event
        del self._pending[:start]
        if len(self._pending) > self.limit:
            self._pending.clear()
            self._skipping_line = True
            self._drop()

    def _drop(self) -> None:
        self._oversized = True
        self._data = []
        self._size = 0

    def _line(self, line: str) -> Event | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment, a keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            if not self._oversized:
                self._size += len(value) + 1
                if self._size > self.limit:
                    self._drop()
                else:
                    self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id":
            if "\x00" not in value:
                self.last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> Event | None:
        event = None
        if self._oversized:
            event = Event(self._type or "message", "", self.last_id, oversized=True)
        elif self._data:
            event = Event(self._type or "message", "\n".join(self._data), self.last_id)
        self._data, self._size, self._type, self._oversized = [], 0, "", False
        return event


# --- Messages -------------------------------------------------------------------------------


def _value_spans(text: str) -> dict[str, tuple[int, int]]:
    """Where each top-level member's value is written in a JSON object's text."""
    decoder = json.JSONDecoder()
    spans: dict[str, tuple[int, int]] = {}
    ws = re.compile(r"[ \t\n\r]*")

    def skip(i: int) -> int:
        match = ws.match(text, i)
        return match.end() if match else i

    i = skip(0)
    if text[i : i + 1] != "{":
        raise ValueError("not a JSON object")
    i = skip(i + 1)
    if text[i : i + 1] == "}":
        return spans
    while True:
        key, i = decoder.raw_decode(text, i)
        i = skip(i)
        if text[i : i + 1] != ":":
            raise ValueError("expected ':'")
        start = skip(i + 1)
        _, end = decoder.raw_decode(text, start)
        spans[key] = (start, end)
        i = skip(end)
        if text[i : i + 1] == ",":
            i = skip(i + 1)
        elif text[i : i + 1] == "}":
            return spans
        else:
            raise ValueError("expected ',' or '}'")


def _raw_body(message: dict[str, Any]) -> bytes | None:
    for key in RAW_BODY_KEYS:
        raw = message.get(key)
        if isinstance(raw, str):
            return raw.encode("utf-8", errors="surrogatepass")
        if isinstance(raw, dict) and raw.get("type") == "Buffer":
            raw = raw.get("data")
        if isinstance(raw, list) and all(isinstance(b, int) and 0 <= b < 256 for b in raw):
            return bytes(raw)
    return None


def body_of(data: str, message: dict[str, Any]) -> bytes | None:
    """The bytes to forward for one message (see the module's docstring); None if it has none."""
    raw = _raw_body(message)
    if raw is not None:
        return raw
    body = message.get("body")
    if body is None:
        return None
    if isinstance(body, str):
        return body.encode("utf-8", errors="surrogatepass")  # a text body, sent as text
    start, end = _value_spans(data)["body"]
    return data[start:end].encode("utf-8", errors="surrogatepass")


def headers_of(message: dict[str, Any]) -> dict[str, str]:
    """GitHub's headers among a message's members (lower-case names), in their usual spelling."""
    headers: dict[str, str] = {}
    for key, value in message.items():
        name = key.lower() if isinstance(key, str) else ""
        if name in HEADER_NAMES:
            spelled = HEADER_NAMES[name]
        elif name.startswith(("x-github-", "x-hub-signature")):
            spelled = "-".join(part.capitalize() for part in name.split("-"))
            spelled = spelled.replace("Github", "GitHub")
        else:
            continue
        if (
            isinstance(value, str)
            and len(value) <= MAX_HEADER_VALUE
            and value.isascii()
            and not _BAD_HEADER_VALUE.search(value)
        ):
            headers[spelled] = value
    return headers


def _for_log(value: str | None) -> str:
    return _SAFE_LOG.sub("?", value[:100]) if value else "-"


# --- The relay ------------------------------------------------------------------------------


class _Relay:
    def __init__(self, source: str, target: str, stop: threading.Event) -> None:
        self.source = source
        self.target = target
        self.stop = stop
        self.last_id: str | None = None
        self.retry_ms: int | None = None
        self._lock = threading.Lock()
        self._response: requests.Response | None = None
        self._finished = False
        self._stream_session = requests.Session()
        self._forward_session = requests.Session()
        # Only GitHub's headers go to the webhook, none of requests' own.
        self._forward_session.headers.clear()
        self._forward_session.trust_env = False  # no proxy between the relay and loopback

    def run(self) -> None:
        watcher = threading.Thread(target=self._watch_stop, name="relay-stop", daemon=True)
        watcher.start()
        connected = False
        failures = 0
        log.info("relay: forwarding %s to %s", self.source, self.target)
        try:
            while not self.stop.is_set():
                try:
                    if self._stream(first=not connected):
                        failures = 0
                    connected = True
                    reason = "the channel closed the stream"
                except _Refused as exc:
                    if not connected:
                        raise RelayError(str(exc)) from None
                    reason = str(exc)
                except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                    reason = f"the channel cannot be reached ({type(exc).__name__})"
                if self.stop.is_set():
                    break
                failures += 1
                delay = self._backoff(failures)
                log.warning("relay: %s: reconnecting in %.1fs", reason, delay)
                self.stop.wait(delay)
        finally:
            self._finished = True
            self._stream_session.close()
            self._forward_session.close()
        log.info("relay: stopped")

    def _backoff(self, failures: int) -> float:
        base = self.retry_ms / 1000 if self.retry_ms is not None else INITIAL_BACKOFF
        delay = min(MAX_BACKOFF, max(0.05, base) * 2 ** min(failures - 1, 10))
        return delay * random.uniform(0.8, 1.2)

    def _watch_stop(self) -> None:
        """Wake a read blocked on the channel's socket when ``stop`` is set."""
        while not self.stop.wait(0.2):
            if self._finished:
                return
        with self._lock:
            response = self._response
        if response is not None:
            _shut(response)

    def _open(self) -> requests.Response:
        url = self.source
        headers = {
            "Accept": "text/event-stream",
            "Accept-Encoding": "identity",
            "Cache-Control": "no-cache",
        }
        if self.last_id is not None:
            headers["Last-Event-ID"] = self.last_id
        origin = urlsplit(self.source)
        for _ in range(MAX_REDIRECTS + 1):
            response = self._stream_session.get(
                url,
                headers=headers,
                stream=True,
                allow_redirects=False,
                timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            )
            if not response.is_redirect:
                return response
            location = urljoin(url, response.headers.get("Location", ""))
            response.close()
            moved = urlsplit(location)
            same_host = (moved.hostname or "").lower() == (origin.hostname or "").lower()
            same_port = (moved.port or _default_port(moved.scheme)) == (
                origin.port or _default_port(origin.scheme)
            ) or (moved.scheme == "https" and moved.port is None)
            if not same_host or not same_port or moved.scheme not in ("http", "https"):
                raise _Refused(
                    f"the channel redirects to another host ({moved.hostname}): the relay "
                    "follows no redirect off the channel's host; give the final channel URL"
                )
            if origin.scheme == "https" and moved.scheme == "http":
                raise _Refused("the channel redirects from https to http: give its https URL")
            url = location
        raise _Refused(f"the channel redirects more than {MAX_REDIRECTS} times: check its URL")

    def _stream(self, *, first: bool) -> bool:
        """Read one connection to its end; True if it brought at least one event."""
        response = self._open()
        with self._lock:
            self._response = response
        if self.stop.is_set():
            _shut(response)
        try:
            if response.status_code != 200:
                raise _Refused(
                    f"the channel answered {response.status_code}: check the channel URL"
                )
            mime = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if mime != "text/event-stream":
                raise _Refused(
                    f"the channel answered {mime or 'no content type'}, not an event stream: "
                    "check that the URL is a smee-style channel"
                )
            if first:
                log.info("relay: connected to %s", self.source)
            parser = SSEParser()
            got_events = False
            while not self.stop.is_set():
                try:
                    chunk = response.raw.read1(READ_SIZE)
                except (OSError, ValueError, AttributeError, urllib3.exceptions.HTTPError):
                    if self.stop.is_set():
                        break  # the socket was shut down to stop
                    raise
                if not chunk:
                    break
                for event in parser.feed(chunk):
                    got_events = True
                    self.last_id, self.retry_ms = parser.last_id, parser.retry_ms
                    if self.stop.is_set():
                        break
                    self._handle(event)
            self.last_id, self.retry_ms = parser.last_id, parser.retry_ms
            return got_events
        finally:
            with self._lock:
                self._response = None
            response.close()

    def _handle(self, event: Event) -> None:
        if event.type != "message":
            return  # "ready", "ping" and the like
        if event.oversized:
            log.warning("relay: skipped a message larger than %d MiB", MAX_MESSAGE_BYTES // 2**20)
            return
        try:
            message = json.loads(event.data)
            if not isinstance(message, dict):
                raise ValueError("not an object")
            body = body_of(event.data, message)
        except (ValueError, KeyError, RecursionError):
            log.warning("relay: skipped a message that is not a smee-style JSON object")
            return
        headers = headers_of(message)
        kind = _for_log(headers.get("X-GitHub-Event"))
        delivery = _for_log(headers.get("X-GitHub-Delivery"))
        extra = {"delivery": delivery}
        if body is None:
            log.warning("relay: %s delivery %s has no body: skipped", kind, delivery, extra=extra)
            return
        if len(body) > MAX_BODY_BYTES:
            log.warning(
                "relay: %s delivery %s is larger than GitHub's %d MiB: skipped",
                kind,
                delivery,
                MAX_BODY_BYTES // 2**20,
                extra=extra,
            )
            return
        status = self._forward(body, headers)
        if status is None:
            log.error(
                "relay: %s delivery %s could not be forwarded: nothing answers at %s; "
                "start the webhook (ghapp serve) and redeliver it from the App's settings",
                kind,
                delivery,
                self.target,
                extra=extra,
            )
        elif status == 401:
            log.warning(
                "relay: %s delivery %s forwarded: 401 (the signature did not verify: the "
                "channel may have re-encoded the body, or GITHUB_WEBHOOK_SECRET differs from "
                "the App's)",
                kind,
                delivery,
                extra=extra,
            )
        else:
            level = logging.INFO if status < 400 else logging.WARNING
            log.log(
                level, "relay: %s delivery %s forwarded: %d", kind, delivery, status, extra=extra
            )

    def _forward(self, body: bytes, headers: dict[str, str]) -> int | None:
        for attempt in range(FORWARD_ATTEMPTS):
            try:
                response = self._forward_session.post(
                    self.target,
                    data=body,
                    headers=headers,
                    timeout=FORWARD_TIMEOUT,
                    allow_redirects=False,
                )
            except requests.ConnectionError:
                if self.stop.wait(2**attempt) or attempt == FORWARD_ATTEMPTS - 1:
                    return None
                continue
            except requests.RequestException:
                return None
            response.close()
            return response.status_code
        return None


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _shut(response: requests.Response) -> None:
    """Shut the response's socket down for reading, which ends a read blocked on it in another
    thread (urllib3's ``shutdown``); closing it from here would race with that read."""
    try:
        response.raw.shutdown()
    except (AttributeError, ValueError, RuntimeError, OSError):
        pass  # already closed or released: the read ends by itself, at the latest on timeout


def run_relay(
    source_url: str,
    target_url: str,
    *,
    stop: threading.Event | None = None,
    allow_remote_target: bool = False,
) -> None:
    """Forward the channel's deliveries to ``target_url`` until ``stop`` is set.

    Raises RelayError for a bad URL, or when the first answer of the channel is not an event
    stream (a 404, a redirect off its host); after a first connection it reconnects for ever."""
    check_urls(source_url, target_url, allow_remote_target=allow_remote_target)
    _Relay(source_url, target_url, stop or threading.Event()).run()


def start_relay_thread(
    source_url: str, target_url: str, *, allow_remote_target: bool = False
) -> tuple[threading.Thread, threading.Event]:
    """Check the URLs (RelayError now), then run the relay in a daemon thread; set the returned
    event to stop it and join the thread. A later RelayError is logged, ending the thread."""
    check_urls(source_url, target_url, allow_remote_target=allow_remote_target)
    stop = threading.Event()

    def run() -> None:
        try:
            run_relay(source_url, target_url, stop=stop, allow_remote_target=allow_remote_target)
        except RelayError as exc:
            log.error("relay: %s", exc)

    thread = threading.Thread(target=run, name="ghapp-relay", daemon=True)
    thread.start()
    return thread, stop


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ghapp.relay SOURCE [--target URL] [--allow-remote-target]``: 0 when stopped
    by SIGTERM or SIGINT, 2 on a bad configuration."""
    from ghapp.core.logs import configure_logging

    parser = argparse.ArgumentParser(
        prog="ghapp relay", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("source", help="the channel's URL, e.g. https://smee.io/CHANNEL")
    parser.add_argument("--target", default=default_target(3000), help="the local webhook")
    parser.add_argument("--allow-remote-target", action="store_true")
    args = parser.parse_args(argv)
    configure_logging()
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        run_relay(args.source, args.target, stop=stop, allow_remote_target=args.allow_remote_target)
    except RelayError as exc:
        log.error("relay: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
