"""wrk, posting signed pushes (bench/post.lua), each a push of its own, and what it measured."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from bench.stage import HERE, SECRET
from webapp.deliveries import signature_for

# Pushes of their own per wrk run: more than a run sends (about 2,500 a second here).
VARIANTS = 60_000
PLACEHOLDER = "@@AFTER@@"


def variants(body: Path) -> tuple[Path, Path]:
    """The template and variants files post.lua reads for ``body``: the same push with another
    pushed sha each time, each signed (made once per body)."""
    template = body.with_suffix(".template")
    lines = body.with_suffix(".variants")
    if not lines.exists():
        payload = json.loads(body.read_bytes())
        payload["after"] = PLACEHOLDER
        text = json.dumps(payload)
        prefix, suffix = (part.encode() for part in text.split(PLACEHOLDER))
        template.write_text(text)
        secret = SECRET.encode()
        with lines.open("w") as out:
            for n in range(VARIANTS):
                sha = hashlib.sha1(b"%d" % n).hexdigest().encode()
                out.write(f"{sha.decode()} {signature_for(prefix + sha + suffix, secret)}\n")
    return template, lines


def wrk_argv(url: str, body: Path, connections: int, seconds: int, latency: bool) -> list[str]:
    """wrk's command line: 2 threads, ``connections`` connections, each request a push of its
    own (``body`` with another pushed sha) signed with the stage's secret, a fresh delivery id."""
    template, lines = variants(body)
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
        str(template),
        str(lines),
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
