"""The enqueue's pure parts: Lua string literals that no content can break out of, and the
refusal of an RQ whose job hash has fields ghapp does not know."""

from __future__ import annotations

import re

import pytest

from webapp.accept import KNOWN_JOB_FIELDS, UnknownJobFormat, check_job_fields, lua_string


@pytest.mark.parametrize(
    "value", ["", "plain", '"; redis.call("FLUSHALL") --', "]]\n\\\x00", "é", b"\xff\x00\x7f"]
)
def test_a_lua_string_literal_is_every_byte_escaped(value) -> None:
    literal = lua_string(value)
    raw = value.encode() if isinstance(value, str) else value
    assert literal.startswith('"')
    assert literal.endswith('"')
    inner = literal[1:-1]
    # Only decimal escapes: no quote, newline or backslash of its own can end it early...
    assert re.fullmatch(r"(\\[0-9]{1,3})*", inner)
    # ...and Lua reads back exactly the bytes.
    assert bytes(int(n) for n in re.findall(r"\\([0-9]{1,3})", inner)) == raw


def test_the_fields_rq_writes_today_are_known() -> None:
    check_job_fields(dict.fromkeys(KNOWN_JOB_FIELDS, ""))


def test_a_field_ghapp_does_not_know_is_named_in_one_line() -> None:
    with pytest.raises(UnknownJobFormat) as refused:
        check_job_fields({"status": "queued", "lease_id": "1", "affinity": "x"})
    message = str(refused.value)
    assert "(affinity, lease_id)" in message
    assert "requirements.lock" in message
    assert "\n" not in message
