"""The relay's pieces: the SSE parser, the bytes and headers taken from a smee message, the URL
checks."""

from __future__ import annotations

import json

import pytest

from ghapp.relay import RelayError, SSEParser, body_of, check_urls, headers_of


def events(parser: SSEParser, *chunks: bytes) -> list[tuple[str, str, str | None, bool]]:
    return [(e.type, e.data, e.id, e.oversized) for c in chunks for e in parser.feed(c)]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending_split_anywhere_gives_the_same_events(eol: bytes) -> None:
    stream = eol.join(
        [
            b"\xef\xbb\xbfid: 1",
            b"event: ready",
            b"data: {}",
            b"",
            b": comment",
            b"data: a",
            b"data: b",
            b"id: 2",
            b"",
            b"",
        ]
    )
    expected = [("ready", "{}", "1", False), ("message", "a\nb", "2", False)]
    for size in (1, 2, 3, 7, len(stream)):
        parser = SSEParser()
        chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
        assert events(parser, *chunks) == expected, size
        assert parser.last_id == "2"


def test_fields_as_the_standard_reads_them() -> None:
    parser = SSEParser()
    got = events(
        parser,
        b"data\n\n"  # a field without a colon and no value: an event with empty data
        b"garbage line\n\n"
        b"id: a\x00b\n"  # an id holding NUL is ignored
        b"retry: 250\nretry: soon\n"
        b"data:no space\n\n",
    )
    assert got == [("message", "", None, False), ("message", "no space", None, False)]
    assert parser.retry_ms == 250


def test_an_event_over_the_limit_is_reported_and_dropped_and_the_next_one_kept() -> None:
    parser = SSEParser(limit=100)
    long_line = b"data: " + b"x" * 500 + b"\n\n"
    got = events(parser, long_line[:60], long_line[60:300], long_line[300:], b"data: ok\n\n")
    assert got == [("message", "", None, True), ("message", "ok", None, False)]
    many_lines = b"data: 0123456789\n" * 20 + b"\n"
    assert events(parser, many_lines, b"data: ok\n\n") == [
        ("message", "", None, True),
        ("message", "ok", None, False),
    ]


def test_the_body_is_forwarded_as_written_in_the_message() -> None:
    data = '{"x-github-event":"push","body":{"a":[1,2.5,"é\\n"],"b":null} ,"query":{}}'
    assert body_of(data, json.loads(data)) == '{"a":[1,2.5,"é\\n"],"b":null}'.encode()


def test_a_raw_body_wins_over_the_parsed_one() -> None:
    for raw in ('{ "a" : 1 }', {"type": "Buffer", "data": list(b'{ "a" : 1 }')}):
        message = {"body": {"a": 1}, "rawdata": raw}
        assert body_of(json.dumps(message), message) == b'{ "a" : 1 }'


def test_a_text_body_is_sent_as_text_and_no_body_is_none() -> None:
    assert body_of('{"body":"payload=%7B%7D"}', {"body": "payload=%7B%7D"}) == b"payload=%7B%7D"
    assert body_of("{}", {}) is None


def test_only_githubs_headers_in_their_usual_spelling() -> None:
    got = headers_of(
        {
            "host": "smee.io",
            "x-forwarded-for": "1.2.3.4",
            "content-length": "12",
            "content-type": "application/json",
            "user-agent": "GitHub-Hookshot/1",
            "x-github-event": "push",
            "x-github-hook-installation-target-id": "9",
            "x-github-new-thing": "v",
            "x-hub-signature-256": "sha256=ab",
            "x-github-delivery": "bad\r\nX-Injected: 1",
            "x-github-hook-id": 5,
            "timestamp": 1,
            "body": {},
        }
    )
    assert got == {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/1",
        "X-GitHub-Event": "push",
        "X-GitHub-Hook-Installation-Target-ID": "9",
        "X-GitHub-New-Thing": "v",
        "X-Hub-Signature-256": "sha256=ab",
    }


@pytest.mark.parametrize(
    ("source", "target", "error"),
    [
        ("https://smee.io/abc", "http://10.0.0.5/webhook", "not a loopback"),
        ("https://smee.io/abc", "http://example.com/webhook", "not a loopback"),
        ("https://smee.io/abc", "ftp://127.0.0.1/webhook", "not an http"),
        ("http://smee.io/abc", "http://127.0.0.1/webhook", "plain http"),
        ("smee.io/abc", "http://127.0.0.1/webhook", "not an http"),
    ],
)
def test_bad_urls_are_refused(source: str, target: str, error: str) -> None:
    with pytest.raises(RelayError, match=error):
        check_urls(source, target)


@pytest.mark.parametrize(
    "target", ["http://127.0.0.1:3000/webhook", "http://[::1]:3000/webhook", "http://localhost/w"]
)
def test_loopback_targets_and_an_explicitly_allowed_remote_one_pass(target: str) -> None:
    check_urls("https://smee.io/abc", target)
    check_urls("http://127.0.0.1:8000/channel", target)
    check_urls("https://smee.io/abc", "http://web:3000/webhook", allow_remote_target=True)
