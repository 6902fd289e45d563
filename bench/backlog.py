"""Section 2, acknowledge with a backlog: the 8 KB push at concurrency 16 against an empty queue
and against one with 50,000 jobs waiting, round after round."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from rq import Queue

from bench.figures import Figure, Load
from bench.load import wrk
from bench.stage import APP_ID, SECRET, Stage, answers, no_aof_rewrites, serve_ghapp, settle
from ghapp.core.push_job import PushJob
from ghapp.local import free_port, wait_until
from webapp.accept import PushQueue
from webapp.deliveries import read_delivery, signature_for

BACKLOG = 50_000
PAYLOAD = "8 KB"
CONNECTIONS = 16
EMPTY = "empty queue"
FULL = f"{BACKLOG:,} jobs waiting"


@dataclass
class Backlogged:
    backlog: int
    loads: dict[str, Load] = field(default_factory=dict)  # EMPTY and FULL
    waiting: dict[str, Figure] = field(default_factory=dict)  # jobs waiting, before each round


def measure(stage: Stage, payloads: dict[str, Path], rounds: int, seconds: int) -> Backlogged:
    body = payloads[PAYLOAD].read_bytes()
    pushes = PushQueue(Queue("ghapp", connection=stage.redis), job_timeout=600)
    headers = {
        "X-Hub-Signature-256": signature_for(body, SECRET.encode()),
        "X-GitHub-Event": "push",
        "Content-Type": "application/json",
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhook"
    result = Backlogged(BACKLOG)
    # With rewrites on, they would fall in the empty queue's rounds only (a preloaded Redis
    # has doubled less by the end of a round): off, the rounds differ in depth alone.
    with no_aof_rewrites(stage.redis), serve_ghapp(stage, port):
        wait_until(lambda: answers(url), 30, "ghapp to answer")
        for _ in range(rounds):
            # Each round starts from the same state: empty, or exactly BACKLOG jobs waiting.
            for label, preload in ((EMPTY, 0), (FULL, BACKLOG)):
                settle(stage.redis)
                headers["X-GitHub-Delivery"] = uuid.uuid4().hex
                delivery = read_delivery(headers, body, secrets=[SECRET.encode()])
                push = delivery.outcome
                assert isinstance(push, PushJob)
                for _ in range(preload):  # each a push of its own: a replay is a duplicate
                    unique = uuid.uuid4().hex
                    own = replace(push, delivery=unique, sha=unique + unique[:8])
                    pushes.enqueue(own, delivery.payload_json, app=APP_ID)
                waiting = Queue("ghapp", connection=stage.redis).count
                answer = wrk(url, payloads[PAYLOAD], CONNECTIONS, seconds)
                result.loads.setdefault(label, Load()).add(answer)
                result.waiting.setdefault(label, Figure()).values.append(waiting)
    return result
