"""What every bad-input test checks: each answer (``check``), and what a test left behind
(``Guard``): no job, no ledger entry, the web process alive and no traceback in its log."""

from __future__ import annotations

import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable

import pytest
import requests
from hypothesis import HealthCheck, settings
from rq import Queue
from rq.registry import (
    CanceledJobRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)

from tests.e2e.conftest import Stack
from webapp.deliveries import signature_for

SECRET = b"test-secret"
OLD_SECRET = b"old-secret"  # the stack accepts both: "old-secret, test-secret"
QUEUE = "ghapp"
BRANCH_IGNORED = "refs/heads/fuzz-not-in-push-branches"  # PUSH_BRANCHES is "main,release/*"


def fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


# --- what a test may not leave behind -------------------------------------------------------------


def job_ids(stack: Stack) -> set[str]:
    """Every job id RQ knows of, in any queue or registry, and every rq:job key's id."""
    ids: set[str] = set()
    queues = {q.name: q for q in Queue.all(connection=stack.redis)}
    queues.setdefault(QUEUE, Queue(QUEUE, connection=stack.redis))
    registries = (
        StartedJobRegistry,
        FinishedJobRegistry,
        FailedJobRegistry,
        ScheduledJobRegistry,
        DeferredJobRegistry,
        CanceledJobRegistry,
    )
    for queue in queues.values():
        ids.update(queue.get_job_ids())
        for registry in registries:
            ids.update(registry(queue=queue).get_job_ids())
    for key in stack.redis.scan_iter(match="rq:job:*", count=1000):
        ids.add(key.decode(errors="replace").split(":")[2])
    return ids


def ledger_keys(stack: Stack) -> set[bytes]:
    keys: set[bytes] = set()
    for pattern in ("ghapp:delivery:*", "ghapp:payload:*"):
        keys.update(stack.redis.scan_iter(match=pattern, count=1000))
    return keys


class Guard:
    """Sends the cases of one test, checks each answer, and what the test left behind."""

    def __init__(self, stack: Stack, name: str, report: Callable[[str], None]):
        self.stack = stack
        self.name = name
        self.report = report
        self.cases = 0
        self.statuses: Counter[int] = Counter()
        self.labels: Counter[str] = Counter()  # what kinds of case were run
        self.started = time.monotonic()
        self.jobs_before = job_ids(stack)
        self.ledger_before = ledger_keys(stack)
        self.log_offset = len(stack.web.output())

    def send(
        self, body: bytes, headers: dict[str, bytes | str | None], timeout: float = 10
    ) -> requests.Response:
        """POST ``body`` with exactly ``headers`` (None: header left out)."""
        self.cases += 1
        sent = {"User-Agent": "GitHub-Hookshot/fuzz", **headers}
        answer = requests.post(self.stack.webhook, data=body, headers=sent, timeout=timeout)
        self.statuses[answer.status_code] += 1
        return answer

    def signed(
        self,
        body: bytes,
        event: str = "push",
        content_type: str = "application/json",
        **extra: bytes | str | None,
    ) -> requests.Response:
        """``body`` as GitHub would send it: correct signature, a fresh delivery id."""
        headers: dict[str, bytes | str | None] = {
            "Content-Type": content_type,
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": signature_for(body, SECRET),
        }
        headers.update(extra)
        return self.send(body, headers)

    def finish(self) -> None:
        """Nothing enqueued, nothing recorded as accepted, the web process alive and quiet."""
        new_jobs = job_ids(self.stack) - self.jobs_before
        assert not new_jobs, f"bad input enqueued jobs: {sorted(new_jobs)[:5]}"
        new_ledger = ledger_keys(self.stack) - self.ledger_before
        assert not new_ledger, f"bad input was recorded as accepted: {sorted(new_ledger)[:5]}"
        assert self.stack.web.alive(), "the web process died"
        log = self.stack.web.output()[self.log_offset :]
        assert "Traceback" not in log, log[-3000:]
        elapsed = time.monotonic() - self.started
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        labels = ", ".join(f"{label}: {n}" for label, n in sorted(self.labels.items()))
        self.report(
            f"{self.name}: bad-input cases run: {self.cases} in {elapsed:.1f} s"
            f" (statuses {statuses or '-'}{'; ' + labels if labels else ''})"
        )


def reporter(config: pytest.Config) -> Callable[[str], None]:
    """A line to the terminal even while pytest captures output (that is, without -s)."""
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if terminal is None or capture is None:
        return lambda line: print(line, file=sys.__stdout__, flush=True)

    def write(line: str) -> None:
        with capture.global_and_fixture_disabled():
            terminal.write("\n")  # after the progress dots
            terminal.write_line(line)

    return write


# --- what each answer must be ---------------------------------------------------------------------


def check(
    answer: requests.Response, *, refused: bool = True, status: int | set[int] | None = None
) -> None:
    """No 5xx, no traceback; a 4xx is one-line JSON; ``refused`` bodies get a 4xx."""
    text = answer.text
    assert answer.status_code < 500, f"{answer.status_code}: {text[:500]}"
    assert "Traceback" not in text, text[:500]
    if refused:
        assert 400 <= answer.status_code < 500, f"accepted: {answer.status_code} {text[:500]}"
    if status is not None:
        allowed = {status} if isinstance(status, int) else status
        assert answer.status_code in allowed, f"{answer.status_code}: {text[:500]}"
    body = answer.json()
    assert isinstance(body, dict), text[:500]
    if answer.status_code >= 400:
        assert body.get("status") == "error", text[:500]
        error = body.get("error")
        assert isinstance(error, str), text[:500]
        assert error.strip(), text[:500]
        assert "\n" not in error, text[:500]
        assert "\r" not in error, text[:500]
    else:
        assert body.get("status") != "queued", f"bad input was queued: {text[:500]}"
