"""RESULTS.md from the sections' figures: one function per section, each returning its lines of
Markdown, with the tables and what they measured."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from pathlib import Path

from bench.acknowledge import PROBOT, SINGLE, SINGLE_LOAD, Acknowledged
from bench.backlog import EMPTY, FULL, Backlogged
from bench.checkout import FULL as FULL_CLONE
from bench.checkout import OURS, SHALLOW, Checkouts
from bench.figures import ratio
from bench.fuzz import Fuzzed
from bench.machine import Machine
from bench.processed import Processed, WorkerRun
from bench.sandbox_cost import MODES, SandboxCost


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table, and the empty line after it."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def write(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


def header(machine: Machine, payload_sizes: Mapping[str, int]) -> list[str]:
    sizes = ", ".join(f"{k}: {v:,} bytes" for k, v in payload_sizes.items())
    return [
        "# ghapp benchmark results",
        "",
        f"Measured {machine.measured:%Y-%m-%d %H:%M} UTC on {machine.cores} cores "
        f"({machine.architecture}, {machine.system}); load generator on the same machine. "
        f"{machine.versions}. Reproduce: `./run bench`.",
        "",
        f"Payloads: {sizes}.",
        "",
    ]


def acknowledge(result: Acknowledged) -> list[str]:
    measured = [name for name in ("ghapp", PROBOT, "naive", "floor") if has(result, name)]
    references = measured[1:]
    rows = []
    for payload in result.payloads:
        for connections in result.connections:
            load = {name: result.loads[(name, payload, connections)] for name in measured}
            ours = load["ghapp"]
            rows.append(
                [
                    payload,
                    str(connections),
                    *(load[name].rps.show() for name in measured),
                    *(ratio(ours.rps, load[name].rps) for name in references),
                    ours.p50_ms.show(" ms", 1),
                    *(load[name].p99_ms.show(" ms", 1) for name in measured),
                ]
            )
    single = result.loads[(SINGLE, *SINGLE_LOAD)]
    payload, connections = SINGLE_LOAD
    if result.probot_missing is None:
        probot = (
            f"{result.probot} runs as one Node process (Probot forks no workers): its own "
            "middleware (`createNodeMiddleware`) on a bare `node:http` server, with an app that "
            "reads each push's installation id and does nothing else, stores nothing "
            "(LOG_LEVEL=warn, NODE_ENV=production; bench/references/probot, installed with npm "
            "in ~/.cache/ghapp-bench); it checks the same X-Hub-Signature-256 with the same "
            "secret and answers 200 once its handler has run. Processes: ghapp, the naive "
            f"endpoint and the floor {result.web_workers} workers each (and a master), "
            "Probot 1."
        )
    else:
        probot = f"Probot not measured: {result.probot_missing}."
    return [
        "## 1. Acknowledge: requests/s and latency",
        f"wrk -t2 for {result.seconds} s, {result.rounds} rounds each: median (min–max). "
        f"Each Python server runs {result.web_workers} gunicorn workers: ghapp's Procfile line "
        "(uvicorn workers), the naive endpoint and the floor sync ones; each request a push of "
        "its own (another pushed sha), under a fresh delivery id; ghapp and the Python "
        "references on the same embedded "
        "Redis (append-only file fsynced every second), emptied before each measurement, with its "
        "automatic rewrite of the file off (nothing drains the queue here, so the rewrites of an "
        "ever larger dataset fell at random in the measurements); each round measures the "
        "servers in turn.",
        "",
        probot,
        "",
        *table(
            [
                "payload",
                "conc.",
                *(f"{name} req/s" for name in measured),
                *(f"vs {name}" for name in references),
                "ghapp p50",
                *(f"{name} p99" for name in measured),
            ],
            rows,
        ),
        f"The naive endpoint run as `gunicorn naive:app`, with gunicorn's default of one worker: "
        f"{single.rps.show()} req/s ({payload}, concurrency {connections}); the table's naive "
        f"endpoint has {result.web_workers}, as ghapp and the floor do.",
        "",
    ]


def has(result: Acknowledged, server: str) -> bool:
    """Whether ``server`` was measured in section 1 (Probot may not have been)."""
    return any(name == server for name, _, _ in result.loads)


def web_profile(samples: Mapping[str, int] | None) -> list[str]:
    if samples is None:
        return ["(py-spy not installed: no profile of the web process)", ""]
    total = sum(samples.values())
    ranked = sorted(samples.items(), key=lambda x: -x[1])
    return [
        "### Where a web worker's time goes (py-spy, 8 KB push, concurrency 16)",
        "",
        *table(
            ["where (innermost known frame)", "share of samples"],
            [[name, f"{n / total:.0%}"] for name, n in ranked],
        ),
    ]


def backlog(result: Backlogged) -> list[str]:
    empty, full = result.loads[EMPTY], result.loads[FULL]
    return [
        "## 2. Acknowledge with a backlog",
        "The 8 KB push at concurrency 16; each round starts from an emptied Redis, preloaded "
        "or not with the backlog (jobs waiting counted before the round), with Redis's automatic "
        "rewrite of its append-only file off (it would fall in the empty queue's rounds only).",
        "",
        *table(
            ["queue", "jobs waiting", "req/s", "p50", "p99"],
            [
                [
                    label,
                    f"{result.waiting[label].median:,.0f}",
                    load.rps.show(),
                    load.p50_ms.show(" ms", 2),
                    load.p99_ms.show(" ms", 2),
                ]
                for label, load in result.loads.items()
            ],
        ),
        f"Latency with the backlog / empty: p50 {ratio(full.p50_ms, empty.p50_ms)}, "
        f"p99 {ratio(full.p99_ms, empty.p99_ms)}; throughput {ratio(full.rps, empty.rps)}.",
        "",
    ]


def processed(result: Processed) -> list[str]:
    return [
        "## 3. Push to processed",
        f"{result.pushes} pushes ({result.pushes // result.repositories} to each of "
        f"{result.repositories} repositories) sent by {result.threads} threads against the GitHub "
        "simulator; PROCESS_COMMAND=true, SUPERSEDE_PUSHES=false (every push processed). "
        "Latency: webhook sent → job ended. Overhead: RQ's run time of the job minus the git "
        "fetch and the processing step.",
        "",
        *table(
            [
                "workers",
                "pushes/min",
                "median latency",
                "p99 latency",
                "mints per push",
                "worker overhead per job (median)",
                "CPU per push, ms",
                "CPU per push in all → at most pushes/min",
            ],
            [worker_row(run, result) for run in result.runs],
        ),
        "CPU per push: CPU time of each part during the burst, over the pushes; the machine's "
        f"{result.cores} cores can process no more than their time over that total.",
        "",
    ]


def worker_row(run: WorkerRun, result: Processed) -> list[str]:
    pushes = result.pushes
    cpu_per_push = sum(run.cpu.values()) / pushes
    ceiling = result.cores * 60 / cpu_per_push  # pushes a minute the cores could process
    return [
        str(run.workers),
        f"{pushes / run.seconds * 60:,.0f}",
        f"{statistics.median(run.latencies):.2f} s",
        f"{statistics.quantiles(run.latencies, n=100)[98]:.2f} s",
        f"{run.mints / pushes:.3f} ({run.mints} for {result.repositories} repositories)",
        f"{statistics.median(run.overheads) * 1000:.0f} ms",
        ", ".join(f"{k} {v / pushes * 1000:.0f}" for k, v in run.cpu.items()),
        f"{cpu_per_push * 1000:.0f} ms → {ceiling:,.0f}",
    ]


def checkout(result: Checkouts) -> list[str]:
    methods = result.methods
    ours, shallow, full = methods[OURS].time, methods[SHALLOW].time, methods[FULL_CLONE].time
    return [
        "## 4. Checkout of one commit",
        f"A repository of {result.commits:,} commits served by the simulator (git http-backend "
        "on loopback). Bytes: the objects received (size of .git/objects afterwards).",
        "",
        *table(
            ["method", "time", "bytes"],
            [
                [label, method.time.show(" s", 3), f"{method.size / 1e6:.1f} MB"]
                for label, method in methods.items()
            ],
        ),
        f"ghapp / shallow clone: {ratio(ours, shallow)}; full clone / ghapp: {ratio(full, ours)}.",
        "",
    ]


def memory(peaks: Mapping[str, float]) -> list[str]:
    return [
        "## 5. Peak memory (VmHWM)",
        "",
        *table(["process", "peak RSS"], [[k, f"{v:.0f} MiB"] for k, v in peaks.items()]),
    ]


def fuzz(result: Fuzzed) -> list[str]:
    tally = result.tally
    fives = sum(n for s, n in tally.statuses.items() if s >= 500 or s == 0)
    lines = [
        "## 6. Fuzzed deliveries",
        "",
        f"{result.requests:,} requests: a real {result.payload_size:,}-byte push from the "
        "simulator, mutated (1–3 of: field deleted, type swapped, huge/negative number, control "
        "character, unicode, bad sha, odd ref, nested or oversized garbage, damaged byte, form or "
        f"raw UTF-8 encoding), correctly signed, posted by {result.clients} clients to the "
        f"Procfile's web process ({result.web_workers} workers) on loopback, in "
        f"{result.seconds:.0f} s ({result.requests / result.seconds:,.0f}/s); seed {result.seed}.",
        "",
        "| status | answers |",
        "|---|---|",
        *[f"| {status or 'no answer'} | {n:,} |" for status, n in sorted(tally.statuses.items())],
        "",
        f"5xx or no answer: {fives}; 4xx without a one-line JSON error: {tally.malformed}; "
        f"tracebacks in the web log: {result.tracebacks}; web process alive: {result.alive}; "
        f"jobs queued: {result.queued:,}; Redis memory after: {result.redis_mib:.0f} MiB.",
        *[f"- {fault}" for fault in tally.faults],
    ]
    if result.tracebacks:
        lines += ["Web log, first traceback:", "```\n" + result.first_traceback + "\n```"]
    return [*lines, ""]


def sandbox(result: SandboxCost) -> list[str]:
    lines = ["## 7. What the sandbox costs a job", ""]
    if result.unavailable is not None:
        return [*lines, f"Not measured: {result.unavailable}", ""]
    rows = []
    for label, runs in result.commands.items():
        wall = {mode: statistics.median(runs[mode].wall) * 1000 for mode in MODES}
        cpu = {mode: statistics.mean(runs[mode].cpu) * 1000 for mode in MODES}
        rows.append(
            f"| {label} | {wall['bare']:.1f} ms / {cpu['bare']:.1f} ms | "
            f"{wall['bubblewrap']:.1f} ms / {cpu['bubblewrap']:.1f} ms | "
            f"+{wall['bubblewrap'] - wall['bare']:.1f} ms / "
            f"+{cpu['bubblewrap'] - cpu['bare']:.1f} ms |"
        )
    return [
        *lines,
        f"Each command run {result.runs} times bare and {result.runs} times in bubblewrap "
        f"({result.bwrap}), alternately, in a {result.files}-file checkout; median wall time / "
        "mean CPU the machine spent per run (everything busy, from /proc/stat: run it on an idle "
        "machine).",
        "",
        "| command | bare (SANDBOX=none) | bubblewrap | cost of the sandbox |",
        "|---|---|---|---|",
        *rows,
        "",
    ]
