"""Fuzzed deliveries, the cases: a real push payload mutated (fields deleted, types swapped,
huge and negative numbers, control characters, unicode, nested garbage, damaged bytes) into the
bytes of one request. No I/O: bench/fuzz.py posts them."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

# The fields a push is judged by, picked more often than the rest of the payload.
KEY_PATHS: list[tuple[Any, ...]] = [
    ("ref",),
    ("before",),
    ("after",),
    ("deleted",),
    ("installation",),
    ("installation", "id"),
    ("repository",),
    ("repository", "id"),
    ("repository", "full_name"),
    ("repository", "clone_url"),
    ("repository", "pushed_at"),
]
OTHER_TYPES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    1.5,
    "",
    "x",
    "7",
    [],
    {},
    [1, "a"],
    {"a": 1},
]
NUMBERS: list[Any] = [
    2**31,
    2**53 + 1,
    2**62,
    2**63 - 1,
    2**63,
    2**64,
    2**64 + 1,
    10**30,
    -1,
    -(2**63),
    -(10**30),
    0,
    1e308,
    -1e308,
    1e-300,
    0.5,
]
CONTROLS = [chr(c) for c in [*range(0x20), 0x7F, 0x85, 0x9F]] + ["\u2028", "\u2029", "\r\n"]
UNICODE = [
    "\u00e9",
    "\u0301",  # combining accent
    "\u202e",  # right-to-left override
    "\u2066",
    "\ufeff",
    "\ufffd",
    "\uffff",
    "\U0001f600",
    "\U0010ffff",
    "\ud800",  # a lone surrogate: valid in a JSON escape, not in UTF-8
    "\udfff",
    "\u0000",
    "\u00a0",
]
SHA_CHARS = "0123456789abcdef"


@dataclass
class Case:
    """One mutated payload: its JSON value, literal replacements applied after serialising
    (garbage JSON cannot build: too deep, too big for its int), and what was done."""

    payload: Any
    raw: list[tuple[bytes, bytes]] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    form: bool = False
    ascii: bool = True
    damage: list[tuple[int, bytes]] = field(default_factory=list)  # (position ‰, bytes)


def all_paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield (*prefix, key)
            yield from all_paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield (*prefix, index)
            yield from all_paths(inner, (*prefix, index))


def parent_of(payload: Any, path: tuple[Any, ...], create: bool) -> Any:
    """The container holding ``path``'s last step, or None if an earlier mutation removed it."""
    node = payload
    for step in path[:-1]:
        if isinstance(node, dict):
            if not isinstance(node.get(step), (dict, list)):
                if not create:
                    return None
                node[step] = {}
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and step < len(node):
            node = node[step]
        else:
            return None
    return node


def get_path(payload: Any, path: tuple[Any, ...]) -> Any:
    node = parent_of(payload, path, create=False)
    if isinstance(node, dict):
        return node.get(path[-1])
    if isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node):
        return node[path[-1]]
    return None


def set_path(payload: Any, path: tuple[Any, ...], value: Any) -> None:
    node = parent_of(payload, path, create=True)
    if isinstance(node, dict) or (
        isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node)
    ):
        node[path[-1]] = value


def del_path(payload: Any, path: tuple[Any, ...]) -> None:
    node = parent_of(payload, path, create=False)
    if isinstance(node, dict):
        node.pop(path[-1], None)
    elif isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node):
        del node[path[-1]]


def name(path: tuple[Any, ...]) -> str:
    return ".".join(str(step) for step in path) or "(body)"


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def insert(rng: random.Random, text: str, piece: str) -> str:
    at = rng.randint(0, len(text))
    return text[:at] + piece + text[at:]


def sha_variant(rng: random.Random, sha: str) -> str:
    return rng.choice(
        [
            sha + "\n",
            "\n" + sha,
            sha.upper(),
            sha[:-1],
            sha + "0",
            " " + sha,
            sha[:20] + "\u0660" + sha[21:],
            "0" * 40,
            "".join(rng.choice(SHA_CHARS) for _ in range(40)),  # another commit: accepted
        ]
    )


def garbage(rng: random.Random) -> bytes:
    """Literal JSON too deep or too big to build as a value."""
    kind = rng.randrange(6)
    depth = rng.choice([10, 100, 500, 1023, 1024, 1025, 5000])
    if kind == 0:
        return b"[" * depth + b"]" * depth
    if kind == 1:
        return b'{"a":' * depth + b"1" + b"}" * depth
    if kind == 2:
        return b"9" * rng.choice([20, 400, 5000])  # an integer past any machine type
    if kind == 3:
        return b"[" + b",".join([b"1"] * rng.choice([1000, 50_000])) + b"]"
    if kind == 4:
        return json.dumps("x" * rng.choice([1000, 100_000])).encode()
    return rng.choice([b"1e400", b"-1e400", b"-0", b"1E2", b"0.0000000000001e-400"])


def mutate(rng: random.Random, case: Case, paths: list[tuple[Any, ...]]) -> None:
    """Apply one random mutation to ``case``."""
    kind = rng.choice(
        [
            "delete",
            "type",
            "number",
            "control",
            "unicode",
            "sha",
            "garbage",
            "ref",
            "encoding",
            "bytes",
        ]
    )
    path = rng.choice(KEY_PATHS) if rng.random() < 0.6 else rng.choice(paths)
    payload = case.payload
    current = get_path(payload, path)
    if kind == "delete":
        del_path(payload, path)
        case.done.append(f"delete {name(path)}")
    elif kind == "type":
        value = rng.choice(OTHER_TYPES)
        set_path(payload, path, value)
        case.done.append(f"{name(path)}={short(value)}")
    elif kind == "number":
        value = rng.choice(NUMBERS)
        set_path(payload, path, value)
        case.done.append(f"{name(path)}={short(value)}")
    elif kind in ("control", "unicode"):
        piece = rng.choice(CONTROLS if kind == "control" else UNICODE)
        text = current if isinstance(current, str) else "x"
        value = insert(rng, text, piece) if rng.random() < 0.7 else text + piece
        set_path(payload, path, value)
        case.done.append(f"{name(path)}={short(value)}")
    elif kind == "sha":
        path = rng.choice([("before",), ("after",)])
        value = sha_variant(rng, str(get_path(payload, path)))
        set_path(payload, path, value)
        case.done.append(f"{name(path)}={short(value)}")
    elif kind == "garbage":
        marker = f"@@garbage-{len(case.raw)}@@"
        literal = garbage(rng)
        set_path(payload, path, marker)
        case.raw.append((json.dumps(marker).encode(), literal))
        case.done.append(f"{name(path)}=<{short(literal[:40])} {len(literal)} bytes>")
    elif kind == "ref":
        value = rng.choice(
            [
                "refs/heads/" + rng.choice(UNICODE + CONTROLS) + "x",
                "refs/heads/feature/" + uuid.uuid4().hex[:8],  # another branch: accepted
                "refs/tags/v1",
                "refs/heads/",
                "refs/heads/a..b",
                "refs/heads/main.lock",
                "refs/heads/" + "x" * rng.choice([1000, 1013, 5000]),
                "main",
                "refs/heads/main\n",
                "/refs/heads/main",
            ]
        )
        payload["ref"] = value
        case.done.append(f"ref={short(value)}")
    elif kind == "encoding":
        choice = rng.randrange(2)
        if choice == 0:
            case.form = True
            case.done.append("form-encoded")
        else:
            case.ascii = False
            case.done.append("raw UTF-8")
    else:
        position, piece = rng.randrange(1000), rng.choice([b"", b"\x00", b"\xff", b"}", b'"'])
        case.damage.append((position, piece))
        case.done.append(f"bytes@{position / 10:.1f}%={piece!r}")


def body_of(case: Case) -> bytes:
    text = json.dumps(case.payload, ensure_ascii=case.ascii)
    raw = text.encode("utf-8", errors="surrogatepass")  # a lone surrogate: invalid UTF-8
    for marker, literal in case.raw:
        raw = raw.replace(marker, literal)
    for position, piece in case.damage:
        at = len(raw) * position // 1000
        raw = raw[:at] + piece + raw[at + 1 :]  # one byte replaced (or removed)
    if case.form:
        raw = urlencode({"payload": raw}).encode()
    return raw
