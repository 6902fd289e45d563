"""Bad input, generated, against the real web process: never a 5xx, a one-line JSON refusal,
and never a job.

Every property posts to the session's gunicorn process (``stack``) and checks, per case: no 5xx
and no traceback; a 4xx is JSON with a one-line ``error``; a body that must be refused is a 4xx.
Per test: no new job anywhere in RQ (queue or registry), no new delivery ledger entry, the web
process still alive and no traceback in its log. Explicit examples of refusals found by these
properties stand at the end of the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
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
from tests.support import wait_job
from webapp.deliveries import signature_for

SECRET = b"test-secret"
OLD_SECRET = b"old-secret"  # the stack accepts both: "old-secret, test-secret"
QUEUE = "ghapp"
MIB = 1024 * 1024
# Bytes gunicorn refuses in a header value itself, before the app sees the request.
PROTOCOL_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
PROTOCOL_MAX_FIELD = 8000  # gunicorn's limit_request_field_size is 8190 per header line
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


# --- what a test may not leave behind ---------------------------------------------------------


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


@pytest.fixture
def guard(
    stack: Stack, request: pytest.FixtureRequest, record_property: Callable[[str, Any], None]
) -> Iterator[Guard]:
    watcher = Guard(stack, request.node.name, reporter(request.config))
    yield watcher
    record_property("bad_input_cases", watcher.cases)


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


# --- a real push, to damage -------------------------------------------------------------------


@pytest.fixture(scope="module")
def push(stack: Stack) -> dict[str, Any]:
    """A real push payload of a repository of our own, accepted and processed once, unchanged:
    so each refusal below is due to the damage done to it, not to the payload itself."""
    repo = stack.repository(f"octo-org/bad-input-{uuid.uuid4().hex[:6]}")
    sha = stack.simulator.commit(repo.full_name, files={"a.txt": "1\n"}, message="one")
    payload = stack.simulator.push_payload(
        repo.full_name, before=None, after=sha, ref="refs/heads/main"
    )
    answer = stack.post(payload)
    assert answer.status_code == 202, answer.text
    assert wait_job(stack.redis, answer.json()["job_id"]).get_status() == "finished"
    return payload


def dumps(payload: Any) -> bytes:
    return json.dumps(payload).encode()


# --- strategies -------------------------------------------------------------------------------


def header_safe(value: bytes) -> bytes:
    """What requests lets through as a header value: no CR/LF, no leading whitespace."""
    return value.replace(b"\r", b"").replace(b"\n", b"").lstrip(b" \t\x0b\x0c")


def header_values(max_size: int = 200) -> st.SearchStrategy[bytes]:
    """Header values: mostly ones HTTP allows (which reach the app), some with control
    characters (which gunicorn refuses itself)."""
    no_controls = st.characters(codec="utf-8", exclude_categories=["Cc"], include_characters="\t")
    latin1 = st.sampled_from([9, *range(0x20, 0x7F), *range(0x80, 0x100)])
    return st.one_of(
        st.text(no_controls, max_size=max_size).map(str.encode),  # unicode, sent as UTF-8
        st.lists(latin1, max_size=max_size).map(bytes),  # latin-1 bytes, not UTF-8
        st.sampled_from([b"", b"\t", b"x" * 101, "d\u00e9livery-\u2603".encode()]),
        st.binary(max_size=20),  # control characters too
    ).map(header_safe)


EVENTS = st.one_of(
    st.none(),
    st.sampled_from(
        [b"push", b"ping", b"installation", b"installation_repositories", b"", b"PUSH", b"pu sh"]
    ),
    header_values(60),
)
DELIVERIES = st.one_of(
    st.none(),
    st.just(b""),
    st.uuids().map(lambda u: str(u).encode()),
    st.sampled_from([b"a" * 101, b"a" * 9000, b"../../etc", b"id with spaces", b"\xff\xfe"]),
    header_values(150),
)
CONTENT_TYPES = st.one_of(
    st.none(),
    st.sampled_from(
        [
            b"application/json",
            b"application/json; charset=utf-8",
            b"application/json; charset=utf-16",
            b"application/json;charset=latin-1",
            b"APPLICATION/JSON",
            b"application/vnd.github+json",
            b"application/x-www-form-urlencoded",
            b"application/x-www-form-urlencoded; charset=utf-8",
            b"multipart/form-data; boundary=xyz",
            b"text/plain",
            b"application/octet-stream",
            b"*/*",
            b";",
            b"application/json; charset=\xff",
        ]
    ),
    header_values(80),
)
# Signature forms: the ones the stack accepts, and the ones it must refuse with 401.
VALID_SIGNATURES = ("correct", "old-secret", "trailing-whitespace")
INVALID_SIGNATURES = (
    "missing",
    "empty",
    "wrong-secret",
    "other-body",
    "uppercase",
    "sha1",
    "bare-hex",
    "non-ascii",
    "garbage",
)
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


def signature_header(mode: str, body: bytes, garbage: bytes) -> bytes | None:
    correct = signature_for(body, SECRET).encode()
    forms: dict[str, bytes | None] = {
        "correct": correct,
        "old-secret": signature_for(body, OLD_SECRET).encode(),
        "trailing-whitespace": correct + b" \t ",
        "missing": None,
        "empty": b"",
        "wrong-secret": signature_for(body, b"not-" + garbage).encode(),
        "other-body": signature_for(body + b"\0", SECRET).encode(),
        "uppercase": b"sha256=" + correct[len(b"sha256=") :].upper(),
        "sha1": b"sha1=" + hmac.new(SECRET, body, hashlib.sha1).hexdigest().encode(),
        "bare-hex": correct[len(b"sha256=") :],
        "non-ascii": correct + "\u00e9".encode(),
        "garbage": header_safe(garbage),
    }
    return forms[mode]


def could_be_accepted(body: bytes) -> bool:
    """Whether ``body`` reads as a JSON object, directly or as a form's ``payload`` field."""
    for text in _json_texts(body):
        try:
            if isinstance(json.loads(text), dict):
                return True
        except (ValueError, RecursionError):
            continue
    return False


def _json_texts(body: bytes) -> Iterator[bytes]:
    yield body
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return
    for value in fields.get("payload", []):
        yield value.encode("utf-8", errors="surrogatepass")


BODIES = st.one_of(
    st.binary(max_size=4000),
    st.text(max_size=400).map(str.encode),
    JSON_VALUES.filter(lambda v: not isinstance(v, dict)).map(dumps),
    st.binary(max_size=200).map(lambda b: b"payload=" + b),
    st.text(max_size=200).map(lambda t: urlencode({"payload": t}).encode()),
    st.sampled_from([b"", b"{", b"}", b"null", b"[]", b'"{}"', b"payload=", b"payload=[]&a"]),
)


# --- random bytes, random headers --------------------------------------------------------------


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
            # gunicorn refuses the request line/headers itself, in plain text (not JSON).
            guard.labels["refused by gunicorn"] += 1
            assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
            assert "Traceback" not in answer.text
            return
        if signature in INVALID_SIGNATURES:
            check(answer, status=401)
        else:
            check(answer, status={400, 403})

    case()
    guard.finish()


# --- a real push payload cut short --------------------------------------------------------------


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

INVALID_UTF8 = [
    b"\xff",
    b"\xfe\xff",
    b"\x80",
    b"\xc0\x80",  # overlong NUL
    b"\xc3",  # truncated sequence
    b"\xe2\x82",
    b"\xed\xa0\x80",  # an encoded surrogate
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"\xf8\x88\x80\x80\x80",
]
NON_FINITE = [b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf"]
# Where a value of the wrong kind must get a push refused (the base ref is refs/heads/main).
ID_PATHS = [("installation", "id"), ("repository", "id"), ("after",), ("ref",)]


def with_raw_value(payload: dict[str, Any], path: tuple[str, ...], raw_value: bytes) -> bytes:
    """``payload`` serialised with the value at ``path`` replaced by the literal ``raw_value``."""
    marker = f"@@raw-{uuid.uuid4().hex}@@"
    copy = json.loads(json.dumps(payload))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = marker
    return dumps(copy).replace(json.dumps(marker).encode(), raw_value)


@st.composite
def malformed_json(draw: st.DrawFn, push: dict[str, Any]) -> tuple[str, bytes]:
    raw = dumps(push)
    kind = draw(
        st.sampled_from(
            [
                "open-brackets",
                "nested",
                "nested-id",
                "huge-number",
                "huge-id",
                "non-finite",
                "duplicate-key",
                "invalid-utf8",
                "control-char",
                "trailing-data",
                "trailing-comma",
                "single-quotes",
            ]
        )
    )
    if kind == "open-brackets":
        opener = draw(st.sampled_from([b"[", b"{", b'{"a":', b'{"a":[', b'"']))
        return kind, opener * draw(st.integers(1, 100_000 // len(opener)))
    if kind == "nested":
        depth = draw(st.integers(1, 12_000))
        if draw(st.booleans()):
            return kind, b'{"a":' * depth + b"1" + b"}" * depth
        return kind, b"[" * depth + b"]" * depth
    if kind == "nested-id":
        depth = draw(st.integers(1, 12_000))
        nest = b'{"a":' * depth + b"1" + b"}" * depth
        return kind, with_raw_value(push, draw(st.sampled_from(ID_PATHS)), nest)
    if kind == "huge-number":
        digits = draw(st.integers(1, 20_000))
        sign = draw(st.sampled_from([b"", b"-"]))
        return kind, sign + b"9" * digits
    if kind == "huge-id":
        path = draw(st.sampled_from(ID_PATHS))
        number = draw(
            st.one_of(
                st.integers(4301, 20_000).map(lambda n: b"1" * n),  # past Python's int limit
                st.integers(20, 4300).map(lambda n: b"-" + b"1" * n),
                st.sampled_from([b"1e400", b"-1e400", b"1e-400", b"1.0e2", b"7.0", b"-0"]),
            )
        )
        return kind, with_raw_value(push, path, number)
    if kind == "non-finite":
        return kind, with_raw_value(
            push, draw(st.sampled_from(ID_PATHS)), draw(st.sampled_from(NON_FINITE))
        )
    if kind == "duplicate-key":
        # The first occurrence valid, the last one not: whichever a parser keeps, refused.
        key = draw(st.sampled_from(["installation", "repository", "after", "ref"]))
        # "7" is a valid ref that is not a branch (ignored, 200): not among the bad refs.
        bad = draw(
            st.sampled_from([None, "", -1, [], {}, "refs/heads/a..b" if key == "ref" else "7"])
        )
        rest = {k: v for k, v in push.items() if k != key}
        text = json.dumps(rest)[:-1] + f", {json.dumps(key)}: {json.dumps(push[key])}"
        return kind, (text + f", {json.dumps(key)}: {json.dumps(bad)}}}").encode()
    if kind == "invalid-utf8":
        starts = [m.end() for m in re.finditer(rb'": "', raw)]
        at = draw(st.sampled_from(starts))
        return kind, raw[:at] + draw(st.sampled_from(INVALID_UTF8)) + raw[at:]
    if kind == "control-char":
        starts = [m.end() for m in re.finditer(rb'": "', raw)]
        at = draw(st.sampled_from(starts))
        char = bytes([draw(st.sampled_from([*range(0x20)]))])
        return kind, raw[:at] + char + raw[at:]
    if kind == "trailing-data":
        tail = draw(st.sampled_from([b"x", b"}", b"{}", b",", b"\0", raw]))
        return kind, raw + tail
    if kind == "trailing-comma":
        return kind, raw[:-1] + b",}"
    assert kind == "single-quotes"
    return kind, raw.replace(b'"', b"'")


def test_malformed_json_is_refused(stack: Stack, push: dict[str, Any], guard: Guard):
    @fuzz_settings(max_examples=300)
    @given(case=malformed_json(push))
    def case(case: tuple[str, bytes]) -> None:
        kind, body = case
        guard.labels[kind] += 1
        check(guard.signed(body), status=400)

    case()
    guard.finish()


# --- valid JSON of the wrong shape --------------------------------------------------------------

NOT_POSITIVE_INTS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(max_value=0),
    st.floats(allow_nan=False, allow_infinity=False),  # 7.0 is not an id either
    st.text(max_size=12),
    st.integers(min_value=1).map(str),
    st.lists(st.integers(1, 9), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
NOT_OBJECTS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=12), st.lists(st.integers())
)
BAD_SHAS = st.one_of(
    st.none(),
    st.integers(),
    st.just([]),
    st.text(alphabet="0123456789abcdef", max_size=39),
    st.text(alphabet="0123456789abcdef", min_size=41, max_size=80),
    st.text(alphabet="0123456789abcdef", min_size=40, max_size=40)
    .map(str.upper)
    .filter(lambda s: any(c in "ABCDEF" for c in s)),
    st.text(min_size=40, max_size=40).filter(lambda s: not re.fullmatch("[0-9a-f]{40}", s)),
    st.text(alphabet="0123456789abcdef", min_size=40, max_size=40).map(lambda s: f" {s}"),
    # A sha and a line end: "$" let it through, and its fetch was retried for minutes.
    st.text(alphabet="0123456789abcdef", min_size=40, max_size=40).map(lambda s: f"{s}\n"),
)
# Control characters (C0, DEL, C1) and Unicode line separators: they would forge log lines.
CONTROLS = st.one_of(
    st.integers(0, 0x1F), st.integers(0x7F, 0x9F), st.sampled_from([0x2028, 0x2029])
).map(chr)


@st.composite
def with_control(draw: st.DrawFn, text: str) -> str:
    """``text`` with a control character put somewhere in it (or at its end)."""
    at = draw(st.integers(0, len(text)))
    return text[:at] + draw(CONTROLS) + text[at:]


NON_HTTP_URLS = st.one_of(
    st.none(),
    st.integers(),
    st.sampled_from(
        [
            "",
            "ftp://github.com/o/r.git",
            "file:///etc/passwd",
            "git@github.com:o/r.git",
            "ssh://git@github.com/o/r.git",
            "git://github.com/o/r.git",
            "//github.com/o/r.git",
            "github.com/o/r.git",
            "javascript:alert(1)",
            "-uhttps://x",
            "ext::sh -c touch% pwned",
        ]
    ),
    st.text(max_size=30).filter(lambda s: not s.startswith(("http://", "https://"))),
    with_control("github.com/octo-org/r.git").map(lambda rest: "https://" + rest),
)
FULL_NAMES = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=30).filter(lambda s: s.count("/") != 1),
    st.text(alphabet="ab/", min_size=3, max_size=30).filter(lambda s: s.count("/") > 1),
    st.integers(201, 400).map(lambda n: "o/" + "r" * n),
    with_control("octo-org/hello"),  # one slash, and a character that forges log lines
)


def set_path(payload: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set the value at ``path``, making the objects on the way if an earlier damage removed
    them (each damage is enough for a refusal, whichever order they come in)."""
    for key in path[:-1]:
        if not isinstance(payload.get(key), dict):
            payload[key] = {}
        payload = payload[key]
    payload[path[-1]] = value


def del_path(payload: dict[str, Any], path: tuple[str, ...]) -> None:
    for key in path[:-1]:
        if not isinstance(payload.get(key), dict):
            return  # already gone or not an object: refused for that already
        payload = payload[key]
    payload.pop(path[-1], None)


@st.composite
def damage(draw: st.DrawFn) -> tuple[str, Callable[[dict[str, Any]], None]]:
    """One change that must get a push to a PUSH_BRANCHES branch refused."""
    what = draw(
        st.sampled_from(
            [
                "installation-missing",
                "installation-not-object",
                "installation.id",
                "installation.id-missing",
                "repository-missing",
                "repository-not-object",
                "repository.id",
                "repository.id-missing",
                "repository.full_name",
                "repository.clone_url",
                "after",
                "after-missing",
                "ref",
                "ref-missing",
            ]
        )
    )
    path = tuple(what.removesuffix("-missing").removesuffix("-not-object").split("."))
    if what.endswith("-missing"):
        return what, lambda p: del_path(p, path)
    value: Any
    if what.endswith("-not-object"):
        value = draw(NOT_OBJECTS)
    elif path[-1] == "id":
        value = draw(NOT_POSITIVE_INTS)
    elif what == "repository.full_name":
        value = draw(FULL_NAMES)
    elif what == "repository.clone_url":
        value = draw(NON_HTTP_URLS)
    elif what == "after":
        value = draw(BAD_SHAS)
    else:
        value = draw(st.one_of(st.none(), st.integers(), st.just(""), st.just(["main"])))
    return f"{what}={value!r}"[:200], lambda p: set_path(p, path, value)


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


# --- refs git would refuse ----------------------------------------------------------------------

REF_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)  # no lone surrogates
BAD_REF_PARTS = [
    "..",
    "@{",
    " ",
    "\t",
    "\x7f",
    "~",
    "^",
    ":",
    "?",
    "*",
    "[",
    "\\",
    "//",
    "/.",
    ".lock/",
]


@st.composite
def bad_refs(draw: st.DrawFn) -> Any:
    prefix = draw(st.sampled_from(["refs/heads/", "refs/heads/main", "refs/heads/release/", ""]))
    shape = draw(st.sampled_from(["inside", "control", "end", "leading-slash", "long", "other"]))
    if shape == "inside":
        part = draw(st.sampled_from(BAD_REF_PARTS))
        return prefix + draw(REF_TEXT) + part + draw(REF_TEXT)
    if shape == "control":
        part = draw(CONTROLS)
        return prefix + draw(REF_TEXT) + part + draw(REF_TEXT)
    if shape == "end":
        return prefix + draw(REF_TEXT) + draw(st.sampled_from(["/", ".", ".lock", "main.lock"]))
    if shape == "leading-slash":
        return "/" + prefix + draw(REF_TEXT)
    if shape == "long":
        return "refs/heads/release/" + "a" * draw(st.integers(1006, 20_000))
    return draw(st.one_of(st.none(), st.just(""), st.integers(), st.lists(REF_TEXT, max_size=2)))


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


# --- garbage in the informational ``before``: tolerated, never a 5xx ---------------------------


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


# --- oversized and lying bodies -----------------------------------------------------------------


def test_body_just_over_25_mib_is_413(stack: Stack, guard: Guard):
    body = b'{"pad": "' + b"x" * (25 * MIB - 10) + b'"}'
    assert len(body) == 25 * MIB + 1
    check(guard.signed(body), status=413)
    guard.finish()


def raw_request(stack: Stack, head: bytes, body: bytes, *, stall: float) -> bytes:
    """Send ``head`` + ``body`` on a raw socket and read the answer until the server closes.

    Waits ``stall`` seconds for an early answer, then half-closes our side (no more body is
    coming). Fails if the server has neither answered nor closed 10 s after that.
    """
    address = urlsplit(stack.url)
    with socket.create_connection((address.hostname, address.port), timeout=5) as sock:
        sock.sendall(head + body)
        received = b""
        if stall:
            sock.settimeout(stall)
            with contextlib.suppress(TimeoutError):
                received = sock.recv(65536)
        if not received:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:  # the server has closed already
                pass
        sock.settimeout(10)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        except TimeoutError:
            pytest.fail(f"no answer and no close 10 s after the client stopped: {received!r}")
    return received


def post_head(stack: Stack, signed: bytes, content_length: int, event: str = "push") -> bytes:
    """Request head of a delivery signed over ``signed``, claiming ``content_length`` bytes."""
    address = urlsplit(stack.url)
    lines = [
        "POST /webhook HTTP/1.1",
        f"Host: {address.netloc}",
        "Content-Type: application/json",
        f"X-GitHub-Event: {event}",
        f"X-GitHub-Delivery: {uuid.uuid4()}",
        f"X-Hub-Signature-256: {signature_for(signed, SECRET)}",
        f"Content-Length: {content_length}",
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def raw_status(received: bytes) -> int | None:
    """The status of a raw HTTP answer (None: closed without one); never a 5xx, and a 4xx is
    one-line JSON."""
    if not received:
        return None
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", received)
    assert match, received[:300]
    status = int(match.group(1))
    assert status < 500, received[:500]
    assert b"Traceback" not in received
    _, _, body = received.partition(b"\r\n\r\n")
    if status >= 400:
        error = json.loads(body)["error"]
        assert error, received[:500]
        assert "\n" not in error, received[:500]
    return status


def cut_short(stack: Stack, full: bytes, sent: int, *, stall: float = 0) -> int | None:
    """A delivery whose connection ends after ``sent`` of its ``len(full)`` bytes, signed over
    all of them as GitHub does: what the server answers (None: it closed without answering)."""
    head = post_head(stack, full, content_length=len(full))
    return raw_status(raw_request(stack, head, full[:sent], stall=stall))


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
    """As many stalled deliveries as gunicorn has workers, then dropped: the web answers again
    at once, not after gunicorn's 30 s worker timeout."""
    full = dumps(push) + b" " * 1000  # trailing whitespace: still the JSON of ``push``
    head = post_head(stack, full, content_length=len(full))
    address = urlsplit(stack.url)
    stalled = [socket.create_connection((address.hostname, address.port), timeout=5) for _ in "ab"]
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
            status = raw_status(raw_request(stack, head, raw, stall=0))
            guard.statuses[status or 0] += 1
            assert status in (400, 401)
    guard.finish()


def test_body_shorter_than_content_length_is_never_accepted(stack: Stack, guard: Guard):
    body = b'{"zen": "Keep it logically awesome."}'
    head = post_head(stack, body, content_length=len(body) + 1000, event="ping")
    status = raw_status(raw_request(stack, head, body, stall=0))
    assert not job_ids(stack) - guard.jobs_before
    assert status in (None, 400)


# --- HTTP-level garbage gunicorn refuses itself -------------------------------------------------

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
    answer = guard.signed(dumps(push), **extra)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
    assert "Traceback" not in answer.text
    guard.finish()


def test_protocol_level_refusals_are_4xx(stack: Stack, push: dict[str, Any], guard: Guard):
    # gunicorn refuses these itself, before the app, in plain text: a 4xx all the same.
    answer = guard.signed(dumps(push), **{"X-GitHub-Delivery": b"abc\x1b[31m"})
    assert answer.status_code == 400
    assert "Traceback" not in answer.text


# --- examples: refusals these properties once found missing -------------------------------------


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
    answer = guard.signed(body)  # leaves a traceback in the session's web log
    assert not job_ids(stack) - guard.jobs_before  # a 500, but no job either
    check(answer, status=400)


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


PING = dumps({"zen": "Keep it logically awesome.", "hook_id": 1})
FORM = "application/x-www-form-urlencoded"
# name: (why the product accepts it, body, event, content type). Each is a ping or an ignored
# push (installation.id is checked even for a branch outside PUSH_BRANCHES): never enqueued.
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
        "encoded surrogate are taken (and reach the 500 of the lone-surrogate test)",
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
        "installation.id is only checked to be a positive int: 2**64, no GitHub id, passes",
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
