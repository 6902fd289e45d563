"""Bodies and encodings: a real push cut short, malformed JSON, a body over the size limit, and
JSON that only a lenient parser reads (other encodings, NaN, lone surrogates): all refused."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.e2e.bad_input.harness import (
    BRANCH_IGNORED,
    SECRET,
    Guard,
    check,
    fuzz_settings,
    job_ids,
)
from tests.e2e.bad_input.payloads import dumps
from tests.e2e.bad_input.strategies import malformed_json
from tests.e2e.conftest import Stack
from webapp.deliveries import signature_for

MIB = 1024 * 1024


# --- a real push payload cut short ----------------------------------------------------------------


def test_truncated_push_payloads_are_refused(stack: Stack, push: dict[str, Any], guard: Guard):
    raw = dumps(push)
    form = urlencode({"payload": raw.decode()}).encode()

    @fuzz_settings(max_examples=200)
    @given(
        as_form=st.booleans(),
        fraction=st.floats(min_value=0, max_value=1, exclude_max=True),
        sign_full=st.booleans(),
    )
    def case(as_form: bool, fraction: float, sign_full: bool) -> None:
        whole = form if as_form else raw
        cut = whole[: int(len(whole) * fraction)]
        content_type = "application/x-www-form-urlencoded" if as_form else "application/json"
        signature = signature_for(whole if sign_full else cut, SECRET)
        answer = guard.signed(cut, content_type=content_type, **{"X-Hub-Signature-256": signature})
        check(answer, status=401 if sign_full else 400)

    # The shortest and longest cuts, always.
    form_type = "application/x-www-form-urlencoded"
    for cut, content_type in [
        (b"", "application/json"),
        (raw[:1], "application/json"),
        (raw[:-1], "application/json"),
        (form[:-1], form_type),
        (form[: len("payload=")], form_type),
    ]:
        check(guard.signed(cut, content_type=content_type), status=400)
    case()
    guard.finish()


# --- malformed JSON -------------------------------------------------------------------------------


def test_malformed_json_is_refused(stack: Stack, push: dict[str, Any], guard: Guard):
    @fuzz_settings(max_examples=300)
    @given(case=malformed_json(push))
    def case(case: tuple[str, bytes]) -> None:
        kind, body = case
        guard.labels[kind] += 1
        check(guard.signed(body), status=400)

    case()
    guard.finish()


# --- oversized bodies -----------------------------------------------------------------------------


def test_body_just_over_25_mib_is_413(stack: Stack, guard: Guard):
    body = b'{"pad": "' + b"x" * (25 * MIB - 10) + b'"}'
    assert len(body) == 25 * MIB + 1
    check(guard.signed(body), status=413)
    guard.finish()


# --- examples: refusals these properties once found missing ---------------------------------------


@pytest.mark.parametrize("field", ["ref", "full_name", "ref-bytes"])
def test_lone_surrogate_in_a_key_field_is_refused(
    stack: Stack, push: dict[str, Any], guard: Guard, field: str
):
    if field == "ref":  # as a JSON escape
        body = dumps(dict(push, ref="refs/heads/release/\ud800"))
    elif field == "full_name":
        body = dumps(dict(push, repository=dict(push["repository"], full_name="octo-org/\udfff")))
    else:  # as the (invalid UTF-8) bytes of an encoded surrogate
        marker = "refs/heads/release/@@surrogate@@"
        body = dumps(dict(push, ref=marker)).replace(b"@@surrogate@@", b"\xed\xa0\x80")
    answer = guard.signed(body)
    assert not job_ids(stack) - guard.jobs_before
    check(answer, status=400)


PING = dumps({"zen": "Keep it logically awesome.", "hook_id": 1})
FORM = "application/x-www-form-urlencoded"
# name: (why a lenient parser takes it, body, event, content type): each was once accepted.
# Each is a ping or an ignored push (installation.id is checked even for a branch outside
# PUSH_BRANCHES): never enqueued.
NON_STANDARD_BODIES: dict[str, tuple[str, bytes | None, str, str]] = {
    "utf-16-json": (
        "json.loads(bytes) detects and decodes UTF-16; RFC 8259 and GitHub use UTF-8 only",
        PING.decode().encode("utf-16"),
        "ping",
        "application/json",
    ),
    "utf-16-le-json-no-bom": (
        "json.loads(bytes) detects BOM-less UTF-16-LE too",
        PING.decode().encode("utf-16-le"),
        "ping",
        "application/json",
    ),
    "utf-32-json": (
        "json.loads(bytes) detects and decodes UTF-32",
        PING.decode().encode("utf-32"),
        "ping",
        "application/json",
    ),
    "utf-8-bom": (
        "json.loads(bytes) skips a UTF-8 BOM (RFC 8259 lets a parser ignore it)",
        b"\xef\xbb\xbf" + PING,
        "ping",
        "application/json",
    ),
    "nan-literal": (
        "Python's json accepts NaN, not JSON",
        b'{"zen": NaN}',
        "ping",
        "application/json",
    ),
    "infinity-literal": (
        "Python's json accepts -Infinity, not JSON",
        b'{"zen": -Infinity}',
        "ping",
        "application/json",
    ),
    "encoded-surrogate-in-json": (
        "json.loads(bytes) decodes UTF-8 with errors='surrogatepass': the invalid bytes of an "
        "encoded surrogate are taken",
        b'{"zen": "\xed\xa0\x80"}',
        "ping",
        "application/json",
    ),
    "invalid-utf8-in-form": (
        "parse_qs percent-decodes with errors='replace': invalid UTF-8 becomes U+FFFD",
        b"payload=%7B%22zen%22%3A%22%FF%22%7D",
        "ping",
        FORM,
    ),
    "installation-id-2**64": (
        "2**64 is a positive int, but no GitHub id: ids are stored as Redis integers",
        None,  # the push payload, made in the test
        "push",
        "application/json",
    ),
}


@pytest.mark.parametrize("name", list(NON_STANDARD_BODIES))
def test_non_standard_json_is_refused(stack: Stack, push: dict[str, Any], guard: Guard, name: str):
    _, body, event, content_type = NON_STANDARD_BODIES[name]
    if body is None:
        body = dumps(dict(push, ref=BRANCH_IGNORED, installation={"id": 2**64}))
    answer = guard.signed(body, event=event, content_type=content_type)
    assert not job_ids(stack) - guard.jobs_before
    check(answer, status=400)
