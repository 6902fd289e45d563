"""Fuzzed deliveries against the real web process: a real push payload from the simulator,
mutated (fields deleted, types swapped, huge and negative numbers, control characters, unicode,
nested garbage, damaged bytes), correctly signed, posted by concurrent clients to the Procfile's
web process on loopback. Counts the answers by status; any 5xx (or a request left unanswered)
is reported with the mutation that caused it, and fails the run.

Usage: PYTHONPATH=. python bench/fuzz.py [--requests 100000] [--clients 8] [--seed 1]
(also ``./run bench --only fuzz``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import redis

from ghapp.embedded_redis import EmbeddedRedis
from ghapp.local import free_port, wait_until
from ghapp.simulator import GitHubSimulator, generate_app_key
from webapp.deliveries import signature_for

ROOT = Path(__file__).resolve().parent.parent
SECRET = b"fuzz-secret"
APP_ID = "1"
INSTALLATION = 1
EXAMPLES = 20  # 5xx (and other faults) kept per client, to show

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


# ------------------------------------------------------------------------------ mutations


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


# ------------------------------------------------------------------------------ a client


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    faults: list[str] = field(default_factory=list)  # 5xx, no answer, malformed refusal
    fault_count: int = 0
    malformed: int = 0

    def add(self, other: Tally) -> None:
        self.statuses.update(other.statuses)
        self.faults.extend(other.faults[: EXAMPLES - len(self.faults)])
        self.fault_count += other.fault_count
        self.malformed += other.malformed


def client(index: int, count: int, seed: int, port: int, base: bytes) -> Tally:
    """Post ``count`` mutated deliveries, one at a time (gunicorn's sync workers close each
    connection after its answer)."""
    rng = random.Random(seed * 1000 + index)
    paths = list(all_paths(orjson.loads(base)))
    tally = Tally()
    for _ in range(count):
        case = Case(orjson.loads(base))
        for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
            mutate(rng, case, paths)
        body = body_of(case)
        content_type = "application/x-www-form-urlencoded" if case.form else "application/json"
        headers = {
            "Content-Type": content_type,
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.UUID(int=rng.getrandbits(128))),
            "X-Hub-Signature-256": signature_for(body, SECRET),
            "User-Agent": "GitHub-Hookshot/fuzz",
        }
        status, answer = post(port, body, headers)
        tally.statuses[status] += 1
        what = "; ".join(case.done)
        fault = None
        if status >= 500 or status == 0:
            fault = f"{status or 'no answer'} after [{what}]: {answer[:200]!r}"
        elif status >= 400 and not one_line_refusal(answer):
            tally.malformed += 1
            fault = f"{status} without a one-line JSON error after [{what}]: {answer[:200]!r}"
        if fault:
            tally.fault_count += 1
            if len(tally.faults) < EXAMPLES:
                tally.faults.append(fault)
    return tally


def post(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/webhook", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as exc:
        return 0, f"{type(exc).__name__}: {exc}".encode()
    finally:
        connection.close()


def one_line_refusal(answer: bytes) -> bool:
    try:
        error = orjson.loads(answer)["error"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return False
    return isinstance(error, str) and bool(error.strip()) and "\n" not in error


# ------------------------------------------------------------------------------ the stack


def push_payload(home: Path) -> bytes:
    """A real push from the simulator: a few commits, GitHub's full repository objects."""
    _, public = generate_app_key()
    with GitHubSimulator(app_id=APP_ID, public_key_pem=public, root=home / "github") as sim:
        sim.add_installation(INSTALLATION, account="fuzz")
        sim.create_repository("fuzz/target", installation_id=INSTALLATION, files={"a": "a\n"})
        base = sim.branch_tip("fuzz/target")
        for n in range(3):
            sim.commit("fuzz/target", files={f"src/f{n}.py": f"print({n})\n"}, message=f"c{n}")
        payload = sim.push_payload("fuzz/target", before=base, after=sim.branch_tip("fuzz/target"))
    return orjson.dumps(payload)


@contextmanager
def web_process(home: Path, redis_url: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """The Procfile's web line, as deployed, with 2 workers."""
    procfile = (ROOT / "Procfile").read_text()
    web = next(line for line in procfile.splitlines() if line.startswith("web:"))
    env = dict(os.environ)
    env.update(
        GITHUB_WEBHOOK_SECRET=SECRET.decode(),
        GITHUB_APP_ID=APP_ID,
        REDIS_URL=redis_url,
        HOST="127.0.0.1",
        PORT=str(port),
        WEB_CONCURRENCY="2",
        REDELIVERY_INTERVAL="0",
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    with open(home / "web.log", "ab") as log:
        child = subprocess.Popen(
            ["sh", "-c", "exec " + web.removeprefix("web:").strip()],
            env=env,
            cwd=home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield child
    finally:
        child.terminate()
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def healthy(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False


def run_fuzz(
    out: Callable[[str], None] = print, *, requests: int = 100_000, clients: int = 8, seed: int = 1
) -> bool:
    """Run the fuzz; write its report line by line to ``out``; whether no fault was seen."""
    home = Path(tempfile.mkdtemp(prefix="ghapp-fuzz-"))
    server = EmbeddedRedis(home / "redis")
    try:
        base = push_payload(home)
        redis_url = server.start()
        port = free_port()
        with web_process(home, redis_url, port) as web:
            wait_until(lambda: healthy(port), 30, "the web process to answer /healthz")
            status, answer = post(
                port,
                base,
                {
                    "Content-Type": "application/json",
                    "X-GitHub-Event": "push",
                    "X-GitHub-Delivery": str(uuid.uuid4()),
                    "X-Hub-Signature-256": signature_for(base, SECRET),
                },
            )
            if status != 202:
                raise RuntimeError(f"the unmutated push was not queued: {status} {answer[:200]!r}")
            shares = [requests // clients + (n < requests % clients) for n in range(clients)]
            started = time.monotonic()
            with multiprocessing.get_context("spawn").Pool(clients) as pool:
                parts = pool.starmap(
                    client, [(n, shares[n], seed, port, base) for n in range(clients)]
                )
            elapsed = time.monotonic() - started
            alive = web.poll() is None
        connection = redis.Redis.from_url(redis_url)
        queued = connection.llen("rq:queue:ghapp")
        memory = connection.info("memory")["used_memory"] / 2**20
    finally:
        server.stop()
    log = (home / "web.log").read_text(errors="replace")
    shutil.rmtree(home, ignore_errors=True)

    tally = Tally()
    for part in parts:
        tally.add(part)
    tracebacks = log.count("Traceback")
    out("## 6. Fuzzed deliveries")
    out("")
    out(
        f"{requests:,} requests: a real {len(base):,}-byte push from the simulator, mutated "
        f"(1–3 of: field deleted, type swapped, huge/negative number, control character, "
        f"unicode, bad sha, odd ref, nested or oversized garbage, damaged byte, form or raw "
        f"UTF-8 encoding), correctly signed, posted by {clients} clients to the Procfile's web "
        f"process (2 workers) on loopback, in {elapsed:.0f} s ({requests / elapsed:,.0f}/s); "
        f"seed {seed}."
    )
    out("")
    out("| status | answers |")
    out("|---|---|")
    for status, count in sorted(tally.statuses.items()):
        out(f"| {status or 'no answer'} | {count:,} |")
    out("")
    fives = sum(n for s, n in tally.statuses.items() if s >= 500 or s == 0)
    out(
        f"5xx or no answer: {fives}; 4xx without a one-line JSON error: {tally.malformed}; "
        f"tracebacks in the web log: {tracebacks}; web process alive: {alive}; "
        f"jobs queued: {queued:,}; Redis memory after: {memory:.0f} MiB."
    )
    for fault in tally.faults:
        out(f"- {fault}")
    if tracebacks:
        out("Web log, first traceback:")
        at = log.index("Traceback")
        out("```\n" + log[at : at + 3000] + "\n```")
    out("")
    return not (tally.fault_count or tracebacks or not alive)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    clean = run_fuzz(requests=args.requests, clients=args.clients, seed=args.seed)
    return 0 if clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
