"""Section 1, acknowledge: wrk against ghapp's web process, Probot 14 (one Node process, an app that
reads each push's installation id), a naive Flask + RQ endpoint and the floor (HMAC + LPUSH),
side by side, for each payload at concurrency 16 and 64."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from bench import probot
from bench.figures import Load
from bench.load import wrk
from bench.memory import children_peak_mib, peak_rss_mib
from bench.stage import (
    WEB_WORKERS,
    Stage,
    answers,
    no_aof_rewrites,
    serve_ghapp,
    serve_reference,
    settle,
)
from ghapp.local import free_port, wait_until
from tests.support import Process

CONNECTIONS = (16, 64)
SINGLE = "naive, 1 worker"  # gunicorn's default of one worker, measured at one load only
SINGLE_LOAD = ("8 KB", 16)
PROBOT = "Probot"


@dataclass
class Acknowledged:
    rounds: int
    seconds: int
    web_workers: int
    payloads: list[str]
    connections: tuple[int, ...]
    # (server, payload, connections) → its load: ghapp, PROBOT (unless it could not be measured),
    # naive, floor, and SINGLE at SINGLE_LOAD
    loads: dict[tuple[str, str, int], Load] = field(default_factory=dict)
    peaks: dict[str, float] = field(default_factory=dict)  # "web worker (server)" → MiB
    probot: str = ""  # what PROBOT measured: "Probot 14.x.y (Node v…)"
    probot_missing: str | None = None  # why Probot was not measured, if it was not


def up(process: Process, url: str) -> bool:
    """Whether ``process`` answers at ``url``; RuntimeError with its log if it has exited."""
    if not process.alive():
        raise RuntimeError(f"{process.name} exited:\n{process.output()[-2000:]}")
    return answers(url)


def measure(stage: Stage, payloads: dict[str, Path], rounds: int, seconds: int) -> Acknowledged:
    """The servers run side by side; each round measures them one after the other, so drift on
    the shared machine falls on all of them alike."""
    result = Acknowledged(rounds, seconds, WEB_WORKERS, list(payloads), CONNECTIONS)
    # server → (how to start it on a port, its webhook's path)
    servers = {"ghapp": (lambda port: serve_ghapp(stage, port), "/webhook")}
    try:
        installed = probot.install(stage.logs)
    except probot.Unavailable as missing:
        result.probot_missing = str(missing)
        print(f"bench: Probot not measured: {missing}", flush=True)
    else:
        result.probot = installed.label
        servers[PROBOT] = (lambda port: probot.serve(stage, installed, port), probot.PATH)
    servers |= {
        "naive": (lambda port: serve_reference(stage, "naive:app", port), "/webhook"),
        "floor": (lambda port: serve_reference(stage, "floor:app", port), "/webhook"),
        SINGLE: (lambda port: serve_reference(stage, "naive:app", port, workers=1), "/webhook"),
    }
    with ExitStack() as running:
        running.enter_context(no_aof_rewrites(stage.redis))
        urls: dict[str, str] = {}
        pids: dict[str, int] = {}
        for name, (serve, path) in servers.items():
            port = free_port()
            urls[name] = url = f"http://127.0.0.1:{port}{path}"
            process = running.enter_context(serve(port))
            pids[name] = process.pid
            wait_until(lambda p=process, u=url: up(p, u), 30, f"{name} to answer")
        for _ in range(rounds):
            for payload in payloads:
                for connections in CONNECTIONS:
                    for name, url in urls.items():
                        if name == SINGLE and (payload, connections) != SINGLE_LOAD:
                            continue  # one figure, to compare with the naive one
                        settle(stage.redis)
                        answer = wrk(url, payloads[payload], connections, seconds)
                        if answer["errors"]:
                            raise RuntimeError(f"{name}: {answer['errors']} errors under load")
                        result.loads.setdefault((name, payload, connections), Load()).add(answer)
        for name, pid in pids.items():
            if name == PROBOT:  # no master: the Node process serves
                result.peaks["web process (Probot, one Node process)"] = peak_rss_mib(pid)
            elif name != SINGLE:
                result.peaks[f"web worker ({name})"] = children_peak_mib(pid)
    return result
