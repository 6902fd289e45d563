"""wrk, posting a signed webhook body (bench/post.lua), and what it measured."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from bench.stage import HERE, SECRET
from webapp.deliveries import signature_for


def wrk_argv(url: str, body: Path, connections: int, seconds: int, latency: bool) -> list[str]:
    """wrk's command line: 2 threads, ``connections`` connections, each request a push of
    ``body`` signed with the stage's secret and a fresh delivery id."""
    signature = signature_for(body.read_bytes(), SECRET.encode())
    return [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{seconds}s",
        *(["--latency"] if latency else []),
        "-s",
        str(HERE / "post.lua"),
        url,
        "--",
        str(body),
        signature,
        "push",
    ]


def wrk(url: str, body: Path, connections: int, seconds: int) -> dict[str, float]:
    """requests, duration_us, rps, p50_ms, p99_ms and errors of one wrk run."""
    out = subprocess.run(
        wrk_argv(url, body, connections, seconds, latency=True),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("JSON "))
    return json.loads(line[5:])
