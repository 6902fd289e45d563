"""Every row of the webhook's HTTP contract, against the real gunicorn process and Redis."""

from __future__ import annotations

import json
import re
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlencode, urlsplit

import requests
from rq import Queue

from ghapp.core import redis_keys
from tests.conftest import APP_ID, INSTALLATION_ID
from tests.e2e.conftest import Stack
from tests.support import signed_head, wait_job
from webapp.deliveries import signature_for

ZERO = "0" * 40


def queued_jobs(stack: Stack) -> int:
    return Queue("ghapp", connection=stack.redis).count


def push_payload(stack: Stack, name: str, branch: str = "main") -> dict:
    repo = stack.repository(name)
    sha = stack.simulator.commit(
        repo.full_name, files={"a.txt": "1\n"}, message="one", branch=branch
    )
    return stack.simulator.push_payload(
        repo.full_name, before=None, after=sha, ref=f"refs/heads/{branch}"
    )


def test_push_is_accepted_with_202_naming_delivery_and_job(stack: Stack, fresh_repo_name: str):
    payload = push_payload(stack, fresh_repo_name)
    delivery = str(uuid.uuid4())
    answer = stack.post(payload, delivery=delivery)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["delivery"] == delivery
    job = wait_job(stack.redis, body["job_id"])
    assert job.get_status() == "finished", job.latest_result()
    assert job.kwargs["sha"] == payload["after"]


def test_form_encoded_push_is_accepted(stack: Stack, fresh_repo_name: str):
    payload = push_payload(stack, fresh_repo_name)
    body = urlencode({"payload": json.dumps(payload)}).encode()
    answer = stack.post(body, content_type="application/x-www-form-urlencoded")
    assert answer.status_code == 202, answer.text
    assert wait_job(stack.redis, answer.json()["job_id"]).get_status() == "finished"


def test_any_of_several_webhook_secrets_is_accepted(stack: Stack):
    answer = stack.post({"zen": "rotate"}, event="ping", secret=b"old-secret")
    assert answer.status_code == 200, answer.text


def assert_ignored(answer: requests.Response, reason_part: str) -> None:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ignored"
    assert reason_part in body["reason"]


def test_ping_unhandled_events_deletions_tags_and_other_branches_are_ignored(
    stack: Stack, fresh_repo_name: str
):
    before = queued_jobs(stack)
    assert_ignored(
        stack.post({"zen": "Keep it logically awesome.", "hook_id": 1}, event="ping"), "ping"
    )
    delivery = str(uuid.uuid4())
    assert_ignored(stack.post({"action": "opened"}, event="issues", delivery=delivery), "issues")
    # What the web process decided about a delivery is in its log, under the delivery's id.
    assert any(delivery in line and "ignored" in line for line in stack.web.output().splitlines())

    payload = push_payload(stack, fresh_repo_name)
    deletion = dict(payload, after=ZERO, deleted=True)
    assert_ignored(stack.post(deletion), "deleted")
    tag = dict(payload, ref="refs/tags/v1.0")
    assert_ignored(stack.post(tag), "tag")
    other = dict(payload, ref="refs/heads/feature/x")
    assert_ignored(stack.post(other), "PUSH_BRANCHES")
    assert queued_jobs(stack) == before
    matching = dict(payload, ref="refs/heads/release/2.0")
    assert stack.post(matching).status_code == 202


def test_redelivery_of_an_accepted_delivery_is_a_duplicate_and_runs_once(
    stack: Stack, fresh_repo_name: str
):
    payload = push_payload(stack, fresh_repo_name)
    delivery = str(uuid.uuid4())
    first = stack.post(payload, delivery=delivery)
    assert first.status_code == 202
    again = stack.post(payload, delivery=delivery)
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    wait_job(stack.redis, first.json()["job_id"])
    # Concurrent redeliveries too: exactly one of many is accepted. (Another push: the same
    # push under another delivery id is a duplicate as well.)
    other = str(uuid.uuid4())
    another = push_payload(stack, fresh_repo_name + "-concurrent")
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: stack.post(another, delivery=other), range(8)))
    assert sorted(a.status_code for a in answers) == [200] * 7 + [202]
    wait_job(stack.redis, next(a for a in answers if a.status_code == 202).json()["job_id"])
    assert len(stack.record(delivery)) == 1
    assert len(stack.record(other)) == 1


def test_missing_or_wrong_signature_is_401_and_enqueues_nothing(stack: Stack, fresh_repo_name: str):
    payload = push_payload(stack, fresh_repo_name)
    delivery = str(uuid.uuid4())
    before = queued_jobs(stack)
    unsigned = stack.post(payload, secret=None, delivery=delivery)
    assert unsigned.status_code == 401
    assert "GITHUB_WEBHOOK_SECRET" in unsigned.json()["error"]
    wrong = stack.post(payload, secret=b"not-the-secret", delivery=delivery)
    assert wrong.status_code == 401
    assert queued_jobs(stack) == before
    # Signed over other bytes than those sent: refused as well.
    body = json.dumps(payload).encode()
    tampered = stack.post(
        body + b" ", delivery=delivery, headers={"X-Hub-Signature-256": _sig(body)}
    )
    assert tampered.status_code == 401
    # A delivery refused before is processed when GitHub redelivers it properly.
    answer = stack.post(payload, delivery=delivery)
    assert answer.status_code == 202
    assert wait_job(stack.redis, answer.json()["job_id"]).get_status() == "finished"


def _sig(body: bytes) -> str:
    from webapp.deliveries import signature_for

    return signature_for(body, b"test-secret")


def test_malformed_bodies_and_missing_headers_are_400(stack: Stack, fresh_repo_name: str):
    before = queued_jobs(stack)
    assert stack.post(b"{not json").status_code == 400
    assert stack.post(b"[1, 2]").status_code == 400
    assert stack.post(b"[" * 100_000).status_code == 400
    assert stack.post({"zen": "x"}, event="").status_code == 400
    missing_delivery = stack.post({"zen": "x"}, event="ping", headers={"X-GitHub-Delivery": ""})
    assert missing_delivery.status_code == 400
    payload = push_payload(stack, fresh_repo_name)
    no_installation = {k: v for k, v in payload.items() if k != "installation"}
    answer = stack.post(no_installation)
    assert answer.status_code == 400
    assert "installation.id" in answer.json()["error"]
    assert stack.post(dict(payload, after="not-a-sha")).status_code == 400
    assert stack.post(dict(payload, ref="refs/heads/../../etc")).status_code == 400
    assert stack.post(dict(payload, installation={"id": "7"})).status_code == 400
    assert queued_jobs(stack) == before


def test_body_over_25_mib_is_413(stack: Stack):
    body = b'{"pad": "' + b"x" * (25 * 1024 * 1024) + b'"}'
    answer = stack.post(body, event="ping")
    assert answer.status_code == 413


def pieces(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """``body`` as a generator: requests sends it chunked (Transfer-Encoding: chunked)."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def post_chunked(stack: Stack, body: bytes, event: str = "push") -> requests.Response:
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": signature_for(body, b"test-secret"),
    }
    return requests.post(stack.webhook, data=pieces(body), headers=headers, timeout=30)


def test_chunked_bodies_are_read_whole_and_over_25_mib_refused(stack: Stack, fresh_repo_name: str):
    payload = push_payload(stack, fresh_repo_name)
    answer = post_chunked(stack, json.dumps(payload).encode())
    assert answer.request.headers["Transfer-Encoding"] == "chunked"
    assert answer.status_code == 202, answer.text
    assert wait_job(stack.redis, answer.json()["job_id"]).get_status() == "finished"
    large = b'{"pad": "' + b"x" * (25 * 1024 * 1024) + b'"}'
    assert post_chunked(stack, large, event="ping").status_code == 413


def raw_exchange(stack: Stack, data: bytes) -> bytes:
    """Send ``data``, say no more is coming (half-close), and read until the server closes."""
    parts = urlsplit(stack.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def raw_ping(stack: Stack, *, content_length: int | None = None, extra: str = "") -> bytes:
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    return signed_head(stack.url, body, content_length=content_length, extra=extra) + body


def statuses(received: bytes) -> list[bytes]:
    """The status of each answer in ``received`` (their bodies are JSON)."""
    return re.findall(rb"HTTP/1\.1 (\d{3}) ", received)


def test_a_body_ending_short_of_its_content_length_is_400(stack: Stack):
    received = raw_exchange(stack, raw_ping(stack, content_length=10_000))
    assert statuses(received) == [b"400"], received[:500]
    assert b"body shorter than its Content-Length" in received


def test_several_deliveries_on_one_connection_are_answered_in_turn(stack: Stack):
    # Kept alive, and pipelined: the second is sent before the first is answered.
    received = raw_exchange(stack, raw_ping(stack) + raw_ping(stack, extra="Connection: close\r\n"))
    assert statuses(received) == [b"200", b"200"], received[:1000]
    with requests.Session() as session:
        for _ in range(3):
            body = json.dumps({"zen": "again"}).encode()
            headers = {
                "Content-Type": "application/json",
                "X-GitHub-Event": "ping",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": signature_for(body, b"test-secret"),
            }
            answer = session.post(stack.webhook, data=body, headers=headers, timeout=10)
            assert answer.status_code == 200, answer.text


def test_the_webhook_takes_post_only(stack: Stack):
    answer = requests.get(stack.webhook, timeout=10)
    assert answer.status_code == 405
    assert answer.headers["Allow"] == "POST"
    assert "POST" in answer.json()["error"]


def test_webhook_for_another_app_is_refused(stack: Stack, fresh_repo_name: str):
    payload = push_payload(stack, fresh_repo_name)
    answer = stack.post(payload, headers={"X-GitHub-Hook-Installation-Target-ID": "999"})
    assert answer.status_code == 403
    ours = stack.post(payload, headers={"X-GitHub-Hook-Installation-Target-ID": APP_ID})
    assert ours.status_code == 202


def test_installation_events_are_recorded_and_uninstall_drops_cached_tokens(stack: Stack):
    installation = {"id": INSTALLATION_ID + 1000, "account": {"login": "acme"}}
    created = {
        "action": "created",
        "installation": installation,
        "repositories": [{"id": 1, "full_name": "acme/one"}, {"id": 2, "full_name": "acme/two"}],
    }
    assert stack.post(created, event="installation").status_code == 200
    record = stack.redis.hgetall(redis_keys.installation(installation["id"]))
    assert record[b"account"] == b"acme"
    repos = redis_keys.installation_repositories(installation["id"])
    assert stack.redis.smembers(repos) == {b"acme/one", b"acme/two"}
    changed = {
        "action": "removed",
        "installation": installation,
        "repositories_added": [],
        "repositories_removed": [{"id": 2, "full_name": "acme/two"}],
    }
    assert stack.post(changed, event="installation_repositories").status_code == 200
    assert stack.redis.smembers(repos) == {b"acme/one"}
    # A cached token of this installation is gone once it is suspended.
    stack.redis.hset(redis_keys.tokens(installation["id"]), "scope", "sealed")
    suspended = {"action": "suspend", "installation": installation}
    assert stack.post(suspended, event="installation").status_code == 200
    assert not stack.redis.exists(redis_keys.tokens(installation["id"]))
    assert stack.redis.hget(redis_keys.installation(installation["id"]), "action") == b"suspend"


def test_healthz_answers_when_redis_answers(stack: Stack):
    answer = requests.get(stack.url + "/healthz", timeout=5)
    assert answer.status_code == 200
