"""Protocol-level garbage: a Content-Length that lies, clients that stall and go away (sent on
raw sockets, ``tests/raw_http.py``), and header bytes HTTP does not allow, which the HTTP
server refuses itself. Never a 5xx, never a job, and the web workers free again at once."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
import requests

from tests.e2e.bad_input.harness import SECRET, Guard, job_ids
from tests.e2e.bad_input.payloads import dumps
from tests.e2e.conftest import Stack
from tests.raw_http import connect, exchange, parse_answer, request_head
from webapp.deliveries import signature_for


def post_head(stack: Stack, signed: bytes, content_length: int, event: str = "push") -> bytes:
    """Request head of a delivery signed over ``signed``, claiming ``content_length`` bytes."""
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": signature_for(signed, SECRET),
        "Content-Length": str(content_length),
        "Connection": "close",
    }
    return request_head(stack.url, "POST", "/webhook", headers)


def raw_status(received: bytes) -> int | None:
    """The status of a raw HTTP answer (None: closed without one); never a 5xx, and a 4xx is
    one-line JSON."""
    answer = parse_answer(received)
    if answer is None:
        return None
    assert answer.status < 500, received[:500]
    assert b"Traceback" not in received
    if answer.status >= 400:
        error = json.loads(answer.body)["error"]
        assert error, received[:500]
        assert "\n" not in error, received[:500]
    return answer.status


def cut_short(stack: Stack, full: bytes, sent: int, *, stall: float = 0) -> int | None:
    """A delivery whose connection ends after ``sent`` of its ``len(full)`` bytes, signed over
    all of them as GitHub does: what the server answers (None: it closed without answering)."""
    head = post_head(stack, full, content_length=len(full))
    return raw_status(exchange(stack.url, head + full[:sent], stall=stall))


# --- a Content-Length that lies, clients that stall -----------------------------------------------


@pytest.mark.parametrize("stall", [0, 0.5], ids=["half-close-at-once", "stall-then-half-close"])
def test_content_length_larger_than_body(
    stack: Stack, push: dict[str, Any], guard: Guard, stall: float
):
    # Signed over the whole body, as a real delivery cut short in transit would be; signed over
    # the bytes sent, see test_body_shorter_than_content_length_is_never_accepted.
    full = dumps(push)
    for sent in (0, 1, len(full) // 2, len(full) - 1):
        guard.cases += 1
        started = time.monotonic()
        status = cut_short(stack, full, sent, stall=stall)
        guard.statuses[status or 0] += 1  # 0: closed without an answer
        assert status in (None, 400, 401)
        assert time.monotonic() - started < 10
    guard.finish()


def test_clients_that_stall_and_go_away_free_the_web_workers(
    stack: Stack, push: dict[str, Any], guard: Guard
):
    """As many stalled deliveries as the web process has workers, then dropped: the web answers
    again at once, not after a read deadline or a worker timeout."""
    full = dumps(push) + b" " * 1000  # trailing whitespace: still the JSON of ``push``
    head = post_head(stack, full, content_length=len(full))
    stalled = [connect(stack.url) for _ in "ab"]
    try:
        for sock in stalled:
            sock.sendall(head + full[:-1000])
            guard.cases += 1
        time.sleep(0.5)
    finally:
        for sock in stalled:
            sock.close()
    started = time.monotonic()
    for _ in range(4):
        assert requests.get(stack.url + "/healthz", timeout=5).status_code == 200
    assert time.monotonic() - started < 3
    guard.finish()


def test_content_length_smaller_than_body(stack: Stack, push: dict[str, Any], guard: Guard):
    raw = dumps(push)
    for cut in (1, len(raw) // 2, len(raw) - 1):
        # Signed over what is sent (401: the server reads only ``cut`` bytes) or over what the
        # server reads (400: a truncated payload). The rest is never read as another request.
        for signed in (raw, raw[:cut]):
            head = post_head(stack, signed, content_length=cut)
            guard.cases += 1
            status = raw_status(exchange(stack.url, head + raw, stall=0))
            guard.statuses[status or 0] += 1
            assert status in (400, 401)
    guard.finish()


def test_body_shorter_than_content_length_is_never_accepted(stack: Stack, guard: Guard):
    body = b'{"zen": "Keep it logically awesome."}'
    head = post_head(stack, body, content_length=len(body) + 1000, event="ping")
    status = raw_status(exchange(stack.url, head + body, stall=0))
    assert not job_ids(stack) - guard.jobs_before
    assert status in (None, 400)


# --- HTTP-level garbage the server refuses itself ------------------------------------------------

PROTOCOL_CASES = {
    "nul-in-event": {"X-GitHub-Event": b"pu\x00sh"},
    "escape-in-delivery": {"X-GitHub-Delivery": b"abc\x1b[31m"},
    "bell-in-signature": {"X-Hub-Signature-256": b"sha256=\x07"},
    "delivery-9000-bytes": {"X-GitHub-Delivery": b"a" * 9000},
    "content-type-del": {"Content-Type": b"application/json\x7f"},
}


@pytest.mark.parametrize("extra", PROTOCOL_CASES.values(), ids=PROTOCOL_CASES.keys())
def test_protocol_level_garbage_is_a_4xx(
    stack: Stack, push: dict[str, Any], guard: Guard, extra: dict[str, bytes]
):
    # The HTTP server refuses these itself, before the app, in plain text: a 4xx all the same.
    answer = guard.signed(dumps(push), **extra)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
    assert "Traceback" not in answer.text
    guard.finish()
