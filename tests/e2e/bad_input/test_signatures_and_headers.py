"""Signatures and headers: random bodies under every kind of signature, event, delivery id and
content type. A body that could be a push is left out, so every case is refused: 401 for a
signature that does not match, 400 or 403 for the rest, a plain 4xx from the HTTP server itself
for a header HTTP does not allow."""

from __future__ import annotations

import re

from hypothesis import assume, given
from hypothesis import strategies as st

from tests.e2e.bad_input.harness import Guard, check, fuzz_settings
from tests.e2e.bad_input.strategies import (
    BODIES,
    CONTENT_TYPES,
    DELIVERIES,
    EVENTS,
    INVALID_SIGNATURES,
    VALID_SIGNATURES,
    could_be_accepted,
    header_values,
    signature_header,
)
from tests.e2e.conftest import Stack

# Bytes the HTTP server (httptools) refuses in a header value itself, before the app sees it.
PROTOCOL_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
PROTOCOL_MAX_FIELD = 8000  # a header line well under the server's 64 KiB head limit


def test_random_bodies_with_garbage_headers_are_refused(stack: Stack, guard: Guard):
    @fuzz_settings(max_examples=400)
    @given(
        body=BODIES,
        github_event=EVENTS,
        delivery=DELIVERIES,
        content_type=CONTENT_TYPES,
        signature=st.sampled_from(VALID_SIGNATURES + INVALID_SIGNATURES),
        garbage=st.binary(min_size=1, max_size=100),
        target=st.one_of(st.none(), st.just(b"4242"), header_values(30)),
        extra=st.dictionaries(
            st.from_regex(r"\AX-Fuzz-[A-Za-z0-9-]{1,20}\Z"), header_values(), max_size=3
        ),
    )
    def case(
        body: bytes,
        github_event: bytes | None,
        delivery: bytes | None,
        content_type: bytes | None,
        signature: str,
        garbage: bytes,
        target: bytes | None,
        extra: dict[str, bytes],
    ) -> None:
        assume(not could_be_accepted(body))
        headers: dict[str, bytes | str | None] = {
            "Content-Type": content_type,
            "X-GitHub-Event": github_event,
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": signature_header(signature, body, garbage),
            "X-GitHub-Hook-Installation-Target-ID": target,
            **extra,
        }
        answer = guard.send(body, headers)
        values = [v for v in headers.values() if isinstance(v, bytes)]
        if any(PROTOCOL_BAD_VALUE.search(v) or len(v) > PROTOCOL_MAX_FIELD for v in values):
            # The HTTP server refuses the request line/headers itself, in plain text (not JSON).
            guard.labels["refused by the HTTP server"] += 1
            assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
            assert "Traceback" not in answer.text
            return
        if signature in INVALID_SIGNATURES:
            check(answer, status=401)
        else:
            check(answer, status={400, 403})

    case()
    guard.finish()
