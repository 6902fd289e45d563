"""Section 1's profile: where a web worker's CPU goes under load, sampled with py-spy."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from bench.load import wrk_argv
from bench.stage import Stage, answers, serve_ghapp
from ghapp.local import free_port, wait_until
from tests.support import process_children

PAYLOAD = "8 KB"
CONNECTIONS = 16
OWNERS = (
    ("webapp/", "ghapp: parsing (orjson), signature, classification, answer"),
    ("rq/", "RQ: serializing the job's data, its timestamps"),
    ("redis/", "redis-py: sending the payload and the enqueue script, reading the answers"),
    ("logging/", "logging the delivery"),
    ("hmac", "HMAC"),
    ("werkzeug/", "werkzeug: request headers"),
    ("gunicorn/", "gunicorn: HTTP parsing, sockets, its worker loop"),
)
OTHER = "other (interpreter start-up, imports)"


def owner(stack: str) -> str:
    """Who the time of one sampled stack goes to: the innermost frame from a known package
    (a builtin like socket.recv counts for whoever called it)."""
    for frame in reversed(stack.split(";")):
        for key, name in OWNERS:
            if key in frame:
                return name
    return OTHER


def measure(stage: Stage, payloads: dict[str, Path], seconds: int) -> dict[str, int] | None:
    """Samples by owner (see OWNERS) of one web worker of ghapp under wrk (the 8 KB push at
    concurrency 16) for ``seconds``; None without py-spy."""
    if not shutil.which("py-spy"):
        return None
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhook"
    raw = stage.home / "web-profile.txt"
    stage.redis.flushdb()
    with serve_ghapp(stage, port) as server:
        wait_until(lambda: answers(url), 30, "ghapp to answer")
        worker = process_children()[server.pid][0]
        argv = wrk_argv(url, payloads[PAYLOAD], CONNECTIONS, seconds + 2, latency=False)
        load = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        time.sleep(1)  # into the load
        subprocess.run(
            [
                "py-spy",
                "record",
                "--pid",
                str(worker),
                "--duration",
                str(seconds),
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(raw),
            ],
            capture_output=True,
            check=True,
        )
        load.wait()
    samples: dict[str, int] = {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples[owner(stack)] = samples.get(owner(stack), 0) + int(count)
    return samples
