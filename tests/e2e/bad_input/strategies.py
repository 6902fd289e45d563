"""The hypothesis strategies of bad input: header values, signatures and bodies from nowhere;
malformed JSON and wrong-shape damage made from a real push; refs git would refuse."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode

from hypothesis import strategies as st

from tests.e2e.bad_input.harness import OLD_SECRET, SECRET
from tests.e2e.bad_input.payloads import del_path, dumps, set_path, with_raw_value
from webapp.deliveries import signature_for

# --- headers, signatures, bodies from nowhere -----------------------------------------------------


def header_safe(value: bytes) -> bytes:
    """What requests lets through as a header value: no CR/LF, no leading whitespace."""
    return value.replace(b"\r", b"").replace(b"\n", b"").lstrip(b" \t\x0b\x0c")


def header_values(max_size: int = 200) -> st.SearchStrategy[bytes]:
    """Header values: mostly ones HTTP allows (which reach the app), some with control
    characters (which the HTTP server refuses itself)."""
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


# --- malformed JSON, made from a real push --------------------------------------------------------

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
        bad: Any = draw(
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


# --- valid JSON of the wrong shape ----------------------------------------------------------------

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


# --- refs git would refuse ------------------------------------------------------------------------

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
