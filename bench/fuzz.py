"""Section 6, fuzzed deliveries against the real web process: a real push payload from the
simulator, mutated (bench/fuzz_mutations.py), correctly signed, posted by concurrent clients to
the Procfile's web process on loopback. Counts the answers by status; any 5xx (or a request left
unanswered) is reported with the mutation that caused it, and fails the run.

Usage: PYTHONPATH=. python bench/fuzz.py [--requests 100000] [--clients 8] [--seed 1]
(also ``./run bench --only fuzz``).
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import random
import shutil
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bench.fuzz_mutations import Case, all_paths, body_of, mutate
from bench.stage import INSTALLATION, SECRET, WEB_WORKERS, Stage, answers, serve_ghapp
from ghapp.local import free_port, wait_until
from tests.support import signed_post
from webapp.deliveries import signature_for

EXAMPLES = 20  # 5xx (and other faults) kept per client, to show
TRACEBACK = 3000  # characters of the web log's first traceback kept, to show


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
    """Post ``count`` mutated deliveries, one at a time, each on a connection of its own."""
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
            "X-Hub-Signature-256": signature_for(body, SECRET.encode()),
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


@dataclass
class Fuzzed:
    requests: int
    clients: int
    seed: int
    web_workers: int
    payload_size: int  # bytes of the push before mutation
    seconds: float
    tally: Tally
    tracebacks: int  # in the web process's log
    first_traceback: str  # the start of the first, if any
    alive: bool  # the web process, after the run
    queued: int  # jobs waiting afterwards
    redis_mib: float  # Redis's used memory afterwards

    @property
    def clean(self) -> bool:
        return not (self.tally.fault_count or self.tracebacks or not self.alive)


def push_payload(stage: Stage) -> bytes:
    """A real push from the simulator: a few commits, GitHub's full repository objects."""
    sim = stage.simulator
    sim.create_repository("fuzz/target", installation_id=INSTALLATION, files={"a": "a\n"})
    base = sim.branch_tip("fuzz/target")
    for n in range(3):
        sim.commit("fuzz/target", files={f"src/f{n}.py": f"print({n})\n"}, message=f"c{n}")
    payload = sim.push_payload("fuzz/target", before=base, after=sim.branch_tip("fuzz/target"))
    return orjson.dumps(payload)


def measure(stage: Stage, *, requests: int = 100_000, clients: int = 8, seed: int = 1) -> Fuzzed:
    """Post ``requests`` mutated pushes from ``clients`` processes to a fresh web process (the
    stage's Redis emptied first), and count what came back."""
    base = push_payload(stage)
    stage.redis.flushdb()
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhook"
    with serve_ghapp(stage, port, name="fuzz-web", LOG_LEVEL="WARNING") as web:
        wait_until(lambda: answers(url), 30, "the web process to answer")
        answer = signed_post(url, base, secret=SECRET.encode())
        if answer.status_code != 202:
            raise RuntimeError(
                f"the unmutated push was not queued: {answer.status_code} {answer.content[:200]!r}"
            )
        shares = [requests // clients + (n < requests % clients) for n in range(clients)]
        started = time.monotonic()
        with multiprocessing.get_context("spawn").Pool(clients) as pool:
            parts = pool.starmap(client, [(n, shares[n], seed, port, base) for n in range(clients)])
        seconds = time.monotonic() - started
        alive = web.alive()
    tally = Tally()
    for part in parts:
        tally.add(part)
    log = web.log_path.read_text(errors="replace")
    at = log.find("Traceback")
    return Fuzzed(
        requests=requests,
        clients=clients,
        seed=seed,
        web_workers=WEB_WORKERS,
        payload_size=len(base),
        seconds=seconds,
        tally=tally,
        tracebacks=log.count("Traceback"),
        first_traceback=log[at : at + TRACEBACK] if at >= 0 else "",
        alive=alive,
        queued=stage.redis.llen("rq:queue:ghapp"),
        redis_mib=stage.redis.info("memory")["used_memory"] / 2**20,
    )


def main() -> int:
    from bench import report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="ghapp-fuzz-"))
    try:
        with Stage(home) as stage:
            result = measure(stage, requests=args.requests, clients=args.clients, seed=args.seed)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print("\n".join(report.fuzz(result)))
    return 0 if result.clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
