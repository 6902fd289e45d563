"""The bad-input fixtures: one real push to damage, shared by the package, and a guard per test.
The session's ``stack`` comes from ``tests/e2e/conftest.py``."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e.bad_input.harness import Guard, reporter
from tests.e2e.conftest import Stack
from tests.support import wait_job


@pytest.fixture
def guard(
    stack: Stack, request: pytest.FixtureRequest, record_property: Callable[[str, Any], None]
) -> Iterator[Guard]:
    watcher = Guard(stack, request.node.name, reporter(request.config))
    yield watcher
    record_property("bad_input_cases", watcher.cases)


@pytest.fixture(scope="package")
def push(stack: Stack) -> dict[str, Any]:
    """A real push payload of a repository of our own, accepted and processed once, unchanged:
    so each refusal is due to the damage done to it, not to the payload itself."""
    repo = stack.repository(f"octo-org/bad-input-{uuid.uuid4().hex[:6]}")
    sha = stack.simulator.commit(repo.full_name, files={"a.txt": "1\n"}, message="one")
    payload = stack.simulator.push_payload(
        repo.full_name, before=None, after=sha, ref="refs/heads/main"
    )
    answer = stack.post(payload)
    assert answer.status_code == 202, answer.text
    assert wait_job(stack.redis, answer.json()["job_id"]).get_status() == "finished"
    return payload
