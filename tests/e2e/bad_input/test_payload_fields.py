"""Payload fields: a real push with its key fields missing or of the wrong kind, refs git would
refuse, control characters and line ends in names: all refused, each for the field it names.
What is only informational (``before``, ``repository.pushed_at``) is tolerated, never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.e2e.bad_input.harness import BRANCH_IGNORED, Guard, check, fuzz_settings
from tests.e2e.bad_input.payloads import dumps, set_path
from tests.e2e.bad_input.strategies import BAD_SHAS, JSON_VALUES, bad_refs, damage
from tests.e2e.conftest import Stack
from tests.support import wait_job

# --- valid JSON of the wrong shape ----------------------------------------------------------------


def test_wrong_shape_push_payloads_are_refused(stack: Stack, push: dict[str, Any], guard: Guard):
    @fuzz_settings(max_examples=400)
    @given(
        damages=st.lists(damage(), min_size=1, max_size=3),
        before=st.one_of(st.just(push["before"]), JSON_VALUES),
        as_form=st.booleans(),
    )
    def case(
        damages: list[tuple[str, Callable[[dict[str, Any]], None]]], before: Any, as_form: bool
    ) -> None:
        payload = json.loads(json.dumps(push))
        payload["before"] = before  # informational: never the reason for a refusal
        for name, apply in damages:
            guard.labels[name.split("=")[0]] += 1
            apply(payload)
        raw = dumps(payload)
        if as_form:
            body = urlencode({"payload": raw.decode()}).encode()
            answer = guard.signed(body, content_type="application/x-www-form-urlencoded")
        else:
            answer = guard.signed(raw)
        check(answer, status=400)
        if len(damages) == 1:  # refused for that damage, not for something else
            field = damages[0][0].split("=")[0].removesuffix("-missing")
            assert REFUSAL_NAMES[field] in answer.json()["error"], (field, answer.text)

    case()
    guard.finish()


# What the refusal of each damage names.
REFUSAL_NAMES = {
    "installation": "installation.id",
    "installation-not-object": "installation.id",
    "installation.id": "installation.id",
    "repository": "repository.id",
    "repository-not-object": "repository.id",
    "repository.id": "repository.id",
    "repository.full_name": "repository.full_name",
    "repository.clone_url": "repository.clone_url",
    "after": "'after'",
    "ref": "'ref'",
}


# --- refs git would refuse ------------------------------------------------------------------------


def test_bad_refs_are_refused(stack: Stack, push: dict[str, Any], guard: Guard):
    @fuzz_settings(max_examples=250)
    @given(ref=bad_refs())
    def case(ref: Any) -> None:
        check(guard.signed(dumps(dict(push, ref=ref))), status=400)

    for ref in (
        "refs/heads/../main",
        "refs/heads/main\n",
        "refs/heads/ma@{in",
        "refs/heads/",
        "refs/heads/main\u2028",
        "refs/heads/ma\x85in",
    ):
        check(guard.signed(dumps(dict(push, ref=ref))), status=400)
    case()
    guard.finish()


# --- garbage in the informational ``before``: tolerated, never a 5xx ------------------------------


def test_garbage_before_is_tolerated(stack: Stack, push: dict[str, Any], guard: Guard):
    # On a branch outside PUSH_BRANCHES, so that an accepted push is ignored, not processed.
    @fuzz_settings(max_examples=100)
    @given(before=st.one_of(JSON_VALUES, BAD_SHAS, st.just("missing")))
    def case(before: Any) -> None:
        payload = dict(push, ref=BRANCH_IGNORED, before=before)
        if before == "missing":
            del payload["before"]
        answer = guard.signed(dumps(payload))
        check(answer, refused=False, status=200)
        assert answer.json()["status"] == "ignored", answer.text

    case()
    guard.finish()


# --- examples: refusals these properties once found missing ---------------------------------------

EXACT_CASES = {
    "after-with-line-end": ("after", "a" * 40 + "\n", "'after'"),
    "full-name-forging-a-log-line": (
        "repository.full_name",
        "octo-org/x\n2026-01-01 ERROR forged",
        "repository.full_name",
    ),
    "full-name-line-separator": ("repository.full_name", "octo-org/x\u2028y", "full_name"),
    "full-name-escape": ("repository.full_name", "octo-org/\x1b[2Jx", "repository.full_name"),
    "clone-url-line-end": ("repository.clone_url", "https://x.test/o/r.git\n", "clone_url"),
    "ref-next-line": ("ref", "refs/heads/main\x85", "'ref'"),
}


@pytest.mark.parametrize("name", list(EXACT_CASES))
def test_a_value_with_a_line_end_or_control_character_is_refused(
    stack: Stack, push: dict[str, Any], guard: Guard, name: str
):
    path, value, named = EXACT_CASES[name]
    payload = json.loads(json.dumps(push))
    set_path(payload, tuple(path.split(".")), value)
    answer = guard.signed(dumps(payload))
    check(answer, status=400)
    assert named in answer.json()["error"], answer.text
    guard.finish()


# --- an odd pushed_at: still a push, queued -------------------------------------------------------

# Not integers GitHub would send, or integers far from now: pushed_at is only a hint of order.
ODD_PUSHED_AT = [True, False, None, 2**62, 2**64, 10**30, -1, 0, 1.5, "1700000000", [], {"a": 1}]


def test_a_push_with_any_pushed_at_is_queued_never_a_5xx(stack: Stack, push: dict[str, Any]):
    """A correctly signed push whose repository.pushed_at is odd is still a push: queued (202),
    not refused by Redis (``true`` once failed the enqueue script: 503 "out of memory?")."""
    log_offset = len(stack.web.output())
    repo = push["repository"]["full_name"]
    before = push["after"]
    jobs = []
    for value in ODD_PUSHED_AT:
        sha = stack.simulator.commit(repo, files={"a.txt": f"{value!r}\n"}, message="odd")
        payload = stack.simulator.push_payload(repo, before=before, after=sha)
        payload["repository"]["pushed_at"] = value
        answer = stack.post(payload)
        assert answer.status_code == 202, (value, answer.status_code, answer.text)
        jobs.append(answer.json()["job_id"])
        before = sha
    results = [wait_job(stack.redis, job_id, timeout=60) for job_id in jobs]
    assert [job.get_status() for job in results] == ["finished"] * len(jobs)
    # Each push follows the one before: the last is the newest, whatever the dates said (the
    # pushes dated 2**62 and later did not keep it superseded).
    assert results[-1].return_value()["status"] == "processed"
    assert "Traceback" not in stack.web.output()[log_offset:]
