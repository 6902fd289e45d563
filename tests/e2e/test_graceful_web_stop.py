"""On SIGTERM (a deploy), the web process finishes the requests it is in the middle of."""

from __future__ import annotations

import json
import signal
import socket
import uuid
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import Stack
from webapp.deliveries import signature_for


@pytest.mark.stack(workers=0)
def test_a_request_in_flight_when_sigterm_arrives_is_answered(
    own_stack: Stack, fresh_repo_name: str
):
    repo = own_stack.repository(fresh_repo_name)
    payload = own_stack.simulator.push_payload(
        repo.full_name, before=None, after=own_stack.simulator.branch_tip(repo.full_name)
    )
    body = json.dumps(payload).encode()
    head = (
        "POST /webhook HTTP/1.1\r\n"
        f"Host: {urlsplit(own_stack.url).netloc}\r\n"
        "Content-Type: application/json\r\n"
        "X-GitHub-Event: push\r\n"
        f"X-GitHub-Delivery: {uuid.uuid4()}\r\n"
        f"X-Hub-Signature-256: {signature_for(body, b'test-secret')}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    parts = urlsplit(own_stack.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
        sock.sendall(head + body[:100])  # the request is now in the middle of its body
        own_stack.web.popen.send_signal(signal.SIGTERM)
        sock.sendall(body[100:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.split()[1] == b"202", answer[:500]
    assert own_stack.web.popen.wait(30) == 0
