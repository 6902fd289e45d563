"""ghapp's benchmark, side by side with its references in one run; writes bench/RESULTS.md.

1. acknowledge: wrk against the production web process (the Procfile line), a naive Flask +
   RQ endpoint and the floor (HMAC + LPUSH), two payloads, concurrency 16 and 64;
2. acknowledge with 50,000 jobs waiting;
3. push to processed: 500 pushes over 20 repositories, 1, 2 and 4 worker processes;
4. checkout of one commit of a long-history repository vs git's shallow and full clones;
5. peak memory of the web and worker processes;
6. 100,000 fuzzed deliveries (bench/fuzz.py): answers by status, any 5xx with its cause.
7. What the sandbox costs a job (bench/sandbox_cost.py): the command bare and in bubblewrap.

Usage: ./run bench [--rounds N] [--seconds S] [--quick]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
import requests
from rq import Queue
from rq.job import Job, JobStatus

from ghapp.embedded_redis import EmbeddedRedis, redis_server_binary
from ghapp.local import free_port, process_children, wait_until
from ghapp.simulator import GitHubSimulator, generate_app_key
from webapp.accept import PushQueue
from webapp.deliveries import read_delivery, signature_for
from worker.checkout import Limits, directory_usage, fetch_commit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SECRET = "bench-secret"
APP_ID = "1"
INSTALLATION = 1
BACKLOG = 50_000
WEB_WORKERS = 2  # WEB_CONCURRENCY for ghapp, -w for the references: the same for all
SECTIONS = ("acknowledge", "backlog", "processed", "checkout", "fuzz", "sandbox")


# ---------------------------------------------------------------- figures and the report


@dataclass
class Figure:
    """Several rounds of one measurement."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def show(self, unit: str = "", digits: int = 0) -> str:
        lo, hi = min(self.values), max(self.values)
        return f"{self.median:,.{digits}f}{unit} ({lo:,.{digits}f}–{hi:,.{digits}f})"


def ratio(a: Figure | float, b: Figure | float) -> str:
    x = a.median if isinstance(a, Figure) else a
    y = b.median if isinstance(b, Figure) else b
    return f"{x / y:.2f}×" if y else "—"


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, text: str = "") -> None:
        self.lines.append(text)
        print(text, flush=True)

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.add("| " + " | ".join(header) + " |")
        self.add("|" + "---|" * len(header))
        for row in rows:
            self.add("| " + " | ".join(row) + " |")
        self.add()


# ---------------------------------------------------------------- processes


@contextmanager
def process(
    argv: list[str], env: dict[str, str], log: Path, cwd: Path
) -> Iterator[subprocess.Popen]:
    with open(log, "ab") as out:
        child = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
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


def children_of(pid: int) -> list[int]:
    return process_children().get(pid, [])


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and of its children it has waited for (a worker's work horses and
    their git processes)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def ready(url: str) -> bool:
    try:
        return requests.post(url, data=b"{}", timeout=1).status_code < 500
    except requests.RequestException:
        return False


# ---------------------------------------------------------------- the bench environment


class Bench:
    def __init__(self, home: Path, rounds: int, seconds: int) -> None:
        self.home = home
        self.rounds = rounds
        self.seconds = seconds
        self.logs = home / "logs"
        self.logs.mkdir()
        private, public = generate_app_key()
        self.private_key = private
        self.simulator = GitHubSimulator(app_id=APP_ID, public_key_pem=public, root=home / "github")
        self.simulator.start()
        self.simulator.add_installation(INSTALLATION, account="bench")
        self.redis_server = EmbeddedRedis(home / "redis")
        self.redis_url = self.redis_server.start()
        self.redis = redis.Redis.from_url(self.redis_url)

    def close(self) -> None:
        self.redis_server.stop()
        self.simulator.stop()

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            GITHUB_APP_ID=APP_ID,
            GITHUB_PRIVATE_KEY=self.private_key.decode(),
            GITHUB_WEBHOOK_SECRET=SECRET,
            GITHUB_API_URL=self.simulator.api_url,
            GITHUB_URL=self.simulator.url,
            REDIS_URL=self.redis_url,
            HOST="127.0.0.1",
            WEB_CONCURRENCY=str(WEB_WORKERS),
            REDELIVERY_INTERVAL="0",
            PYTHONPATH=str(ROOT),
        )
        env.update(extra)
        return env

    def wrk(self, url: str, body: Path, connections: int) -> dict[str, float]:
        signature = signature_for(body.read_bytes(), SECRET.encode())
        out = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{connections}",
                f"-d{self.seconds}s",
                "--latency",
                "-s",
                str(HERE / "post.lua"),
                url,
                "--",
                str(body),
                signature,
                "push",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        line = next(x for x in out.splitlines() if x.startswith("JSON "))
        return json.loads(line[5:])


# ---------------------------------------------------------------- payloads


def make_payloads(bench: Bench) -> dict[str, Path]:
    """A realistic ~8 KB push (a few commits) and a large one (200 commits)."""
    sim = bench.simulator
    sim.create_repository("bench/payloads", installation_id=INSTALLATION, files={"a": "a\n"})
    base = sim.branch_tip("bench/payloads")
    shas = []
    for n in range(200):
        files = {f"src/module_{n % 17}/file_{n}.py": f"print({n})\n"}
        shas.append(sim.commit("bench/payloads", files=files, message=f"Change {n}: " + "x" * 60))
    paths = {}
    for name, count in (("8 KB", 0), ("200 commits", 200)):
        if count == 0:
            for count in range(1, 200):
                size = len(json.dumps(sim.push_payload("bench/payloads", base, shas[count - 1])))
                if size >= 8000:
                    break
        payload = sim.push_payload("bench/payloads", before=base, after=shas[count - 1])
        path = bench.home / f"payload-{count}.json"
        path.write_text(json.dumps(payload))
        paths[name] = path
    return paths


# ---------------------------------------------------------------- 1 and 2: acknowledge


def serve_ghapp(bench: Bench, port: int) -> Any:
    procfile = (ROOT / "Procfile").read_text()
    web = next(line for line in procfile.splitlines() if line.startswith("web:"))
    argv = ["sh", "-c", "exec " + web.removeprefix("web:").strip()]
    env = bench.env(PORT=str(port))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return process(argv, env, bench.logs / "web.log", bench.home)


def serve_reference(bench: Bench, app: str, port: int, workers: int = WEB_WORKERS) -> Any:
    argv = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}", app]
    return process(argv, bench.env(), bench.logs / f"{app}-{workers}.log", HERE / "references")


def rewriting(connection: redis.Redis) -> bool:
    info = connection.info("persistence")
    return bool(info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"])


def settle(connection: redis.Redis) -> None:
    """Empty Redis and let it finish rewriting its append-only file: every measurement starts
    from the same state, with no background rewrite (a fork copying the dataset) inside it."""
    connection.flushdb()
    wait_until(lambda: not rewriting(connection), 120, "Redis to finish rewriting its AOF")
    connection.bgrewriteaof()
    wait_until(lambda: not rewriting(connection), 120, "Redis to rewrite its AOF")


@contextmanager
def no_aof_rewrites(connection: redis.Redis) -> Iterator[None]:
    """Redis rewrites its append-only file each time it has doubled: with nothing draining the
    queue, every few seconds of load, landing at random in the measurements. Off meanwhile
    (appending, and its fsync every second, stay on)."""
    setting = connection.config_get("auto-aof-rewrite-percentage")["auto-aof-rewrite-percentage"]
    connection.config_set("auto-aof-rewrite-percentage", 0)
    try:
        yield
    finally:
        connection.config_set("auto-aof-rewrite-percentage", setting)


def acknowledge(bench: Bench, payloads: dict[str, Path], report: Report) -> dict[str, Any]:
    """The three servers run side by side; each round measures them one after the other, so
    drift on the shared machine falls on all three alike."""
    servers = {
        "ghapp": lambda port: serve_ghapp(bench, port),
        "naive": lambda port: serve_reference(bench, "naive:app", port),
        "floor": lambda port: serve_reference(bench, "floor:app", port),
        "naive, 1 worker": lambda port: serve_reference(bench, "naive:app", port, workers=1),
    }
    figures: dict[tuple[str, str, int], dict[str, Figure]] = {}
    peaks: dict[str, float] = {}
    with ExitStack() as running:
        running.enter_context(no_aof_rewrites(bench.redis))
        urls: dict[str, str] = {}
        pids: dict[str, int] = {}
        for name, serve in servers.items():
            port = free_port()
            urls[name] = url = f"http://127.0.0.1:{port}/webhook"
            pids[name] = running.enter_context(serve(port)).pid
            wait_until(lambda u=url: ready(u), 30, f"{name} to answer")
        for _ in range(bench.rounds):
            for payload in payloads:
                for connections in (16, 64):
                    for name, url in urls.items():
                        if name == "naive, 1 worker" and (payload, connections) != ("8 KB", 16):
                            continue  # one figure, to compare with the naive one
                        settle(bench.redis)
                        result = bench.wrk(url, payloads[payload], connections)
                        if result["errors"]:
                            raise RuntimeError(f"{name}: {result['errors']} errors under load")
                        slot = figures.setdefault((name, payload, connections), {})
                        for key in ("rps", "p50_ms", "p99_ms"):
                            slot.setdefault(key, Figure()).values.append(result[key])
        for name, pid in pids.items():
            if name != "naive, 1 worker":
                workers = children_of(pid)
                peaks[f"web worker ({name})"] = max(map(peak_rss_mib, workers), default=0.0)
    rows = []
    for payload in payloads:
        for connections in (16, 64):
            ours = figures[("ghapp", payload, connections)]
            naive = figures[("naive", payload, connections)]
            floor = figures[("floor", payload, connections)]
            rows.append(
                [
                    payload,
                    str(connections),
                    ours["rps"].show(),
                    naive["rps"].show(),
                    floor["rps"].show(),
                    ratio(ours["rps"], naive["rps"]),
                    ratio(ours["rps"], floor["rps"]),
                    ours["p50_ms"].show(" ms", 1),
                    ours["p99_ms"].show(" ms", 1),
                    naive["p99_ms"].show(" ms", 1),
                    floor["p99_ms"].show(" ms", 1),
                ]
            )
    report.add("## 1. Acknowledge: requests/s and latency")
    report.add(
        f"wrk -t2 for {bench.seconds} s, {bench.rounds} rounds each: median (min–max). "
        f"Each server: gunicorn with {WEB_WORKERS} sync workers, all on the same embedded Redis "
        "(append-only file fsynced every second), emptied before each measurement, with its "
        "automatic rewrite of the file off (nothing drains the queue here, so the rewrites of an "
        "ever larger dataset fell at random in the measurements); each round measures the "
        "servers in turn."
    )
    report.add()
    report.table(
        [
            "payload",
            "conc.",
            "ghapp req/s",
            "naive req/s",
            "floor req/s",
            "vs naive",
            "vs floor",
            "ghapp p50",
            "ghapp p99",
            "naive p99",
            "floor p99",
        ],
        rows,
    )
    single = figures[("naive, 1 worker", "8 KB", 16)]
    report.add(
        f"The naive endpoint run as `gunicorn naive:app`, with gunicorn's default of one worker: "
        f"{single['rps'].show()} req/s (8 KB, concurrency 16); the table's naive endpoint has "
        f"{WEB_WORKERS}, as ghapp and the floor do."
    )
    report.add()
    return {"figures": figures, "peaks": peaks}


PROFILE_OWNERS = (
    ("webapp/", "ghapp: parsing (orjson), signature, classification, answer"),
    ("rq/", "RQ: serializing the job's data, its timestamps"),
    ("redis/", "redis-py: sending the payload and the enqueue script, reading the answers"),
    ("logging/", "logging the delivery"),
    ("hmac", "HMAC"),
    ("werkzeug/", "werkzeug: request headers"),
    ("gunicorn/", "gunicorn: HTTP parsing, sockets, its worker loop"),
)


def owner(stack: str) -> str:
    """Who the time of one sampled stack goes to: the innermost frame from a known package
    (a builtin like socket.recv counts for whoever called it)."""
    for frame in reversed(stack.split(";")):
        for key, name in PROFILE_OWNERS:
            if key in frame:
                return name
    return "other (interpreter start-up, imports)"


def profile_web(bench: Bench, payloads: dict[str, Path], report: Report) -> None:
    """Where a web worker's CPU goes under load, sampled with py-spy."""
    if not shutil.which("py-spy"):
        report.add("(py-spy not installed: no profile of the web process)")
        report.add()
        return
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhook"
    raw = bench.home / "web-profile.txt"
    bench.redis.flushdb()
    with serve_ghapp(bench, port) as server:
        wait_until(lambda: ready(url), 30, "ghapp to answer")
        worker = children_of(server.pid)[0]
        load = subprocess.Popen(
            [
                "wrk",
                "-t2",
                "-c16",
                f"-d{bench.seconds + 2}s",
                "-s",
                str(HERE / "post.lua"),
                url,
                "--",
                str(payloads["8 KB"]),
                signature_for(payloads["8 KB"].read_bytes(), SECRET.encode()),
                "push",
            ],
            stdout=subprocess.DEVNULL,
        )
        time.sleep(1)
        subprocess.run(
            [
                "py-spy",
                "record",
                "--pid",
                str(worker),
                "--duration",
                str(bench.seconds),
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
    shares: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        shares[owner(stack)] = shares.get(owner(stack), 0) + int(count)
        total += int(count)
    report.add("### Where a web worker's time goes (py-spy, 8 KB push, concurrency 16)")
    report.add()
    report.table(
        ["where (innermost known frame)", "share of samples"],
        [[name, f"{n / total:.0%}"] for name, n in sorted(shares.items(), key=lambda x: -x[1])],
    )


def backlog(bench: Bench, payloads: dict[str, Path], report: Report) -> None:
    body = payloads["8 KB"].read_bytes()
    pushes = PushQueue(Queue("ghapp", connection=bench.redis), job_timeout=600)
    headers = {
        "X-Hub-Signature-256": signature_for(body, SECRET.encode()),
        "X-GitHub-Event": "push",
        "Content-Type": "application/json",
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhook"
    results: dict[str, dict[str, Figure]] = {}
    # With rewrites on, they would fall in the empty queue's rounds only (a preloaded Redis
    # has doubled less by the end of a round): off, the rounds differ in depth alone.
    with no_aof_rewrites(bench.redis), serve_ghapp(bench, port):
        wait_until(lambda: ready(url), 30, "ghapp to answer")
        for _ in range(bench.rounds):
            # Each round starts from the same state: empty, or exactly BACKLOG jobs waiting.
            for label, preload in (("empty queue", 0), (f"{BACKLOG:,} jobs waiting", BACKLOG)):
                settle(bench.redis)
                for _ in range(preload):
                    headers["X-GitHub-Delivery"] = uuid.uuid4().hex
                    delivery = read_delivery(headers, body, secrets=[SECRET.encode()])
                    pushes.enqueue(delivery.outcome, delivery.payload_json, app=APP_ID)
                waiting = Queue("ghapp", connection=bench.redis).count
                result = bench.wrk(url, payloads["8 KB"], 16)
                slot = results.setdefault(label, {})
                slot.setdefault("rps", Figure()).values.append(result["rps"])
                slot.setdefault("p50_ms", Figure()).values.append(result["p50_ms"])
                slot.setdefault("p99_ms", Figure()).values.append(result["p99_ms"])
                slot.setdefault("waiting", Figure()).values.append(waiting)
    empty, full = results["empty queue"], results[f"{BACKLOG:,} jobs waiting"]
    report.add("## 2. Acknowledge with a backlog")
    report.add(
        "The 8 KB push at concurrency 16; each round starts from an emptied Redis, preloaded "
        "or not with the backlog (jobs waiting counted before the round), with Redis's automatic "
        "rewrite of its append-only file off (it would fall in the empty queue's rounds only)."
    )
    report.add()
    report.table(
        ["queue", "jobs waiting", "req/s", "p50", "p99"],
        [
            [
                label,
                f"{r['waiting'].median:,.0f}",
                r["rps"].show(),
                r["p50_ms"].show(" ms", 2),
                r["p99_ms"].show(" ms", 2),
            ]
            for label, r in results.items()
        ],
    )
    report.add(
        f"Latency with the backlog / empty: p50 {ratio(full['p50_ms'], empty['p50_ms'])}, "
        f"p99 {ratio(full['p99_ms'], empty['p99_ms'])}; throughput "
        f"{ratio(full['rps'], empty['rps'])}."
    )
    report.add()


# ---------------------------------------------------------------- 3: push to processed


def make_repositories(bench: Bench, count: int, pushes_each: int) -> list[tuple[str, list[str]]]:
    repos = []
    for n in range(count):
        name = f"bench/service-{n}"
        files = {f"src/file_{i}.py": f"# file {i}\n" * 20 for i in range(30)}
        bench.simulator.create_repository(name, installation_id=INSTALLATION, files=files)
        shas = [
            bench.simulator.commit(name, files={"CHANGES": f"{n}-{k}\n"}, message=f"push {k}")
            for k in range(pushes_each)
        ]
        repos.append((name, shas))
    return repos


def push_to_processed(bench: Bench, report: Report) -> dict[str, float]:
    repos = make_repositories(bench, 20, 25)
    pushes = [(name, shas[k]) for k in range(25) for name, shas in repos]
    rows = []
    peaks: dict[str, float] = {}
    for workers in (1, 2, 4):
        row, peaks[f"worker process ({workers} running)"] = run_pushes(bench, pushes, workers)
        rows.append([str(workers), *row])
    report.add("## 3. Push to processed")
    report.add(
        f"{len(pushes)} pushes ({len(pushes) // len(repos)} to each of {len(repos)} repositories) "
        "sent by 8 threads against the GitHub simulator; PROCESS_COMMAND=true, "
        "SUPERSEDE_PUSHES=false (every push processed). Latency: webhook sent → job ended. "
        "Overhead: RQ's run time of the job minus the git fetch and the processing step."
    )
    report.add()
    report.table(
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
        rows,
    )
    report.add(
        "CPU per push: CPU time of each part during the burst, over the pushes; the machine's "
        f"{os.cpu_count()} cores can process no more than their time over that total."
    )
    report.add()
    return peaks


def run_pushes(
    bench: Bench, pushes: list[tuple[str, str]], workers: int
) -> tuple[list[str], float]:
    """Send every push to a fresh web process with ``workers`` workers; the table row and the
    workers' peak memory."""
    from rq import Worker

    bench.redis.flushdb()
    mints_before = len(bench.simulator.issued_tokens)
    port = free_port()
    env = bench.env(
        PORT=str(port), PROCESS_COMMAND="true", SUPERSEDE_PUSHES="false", JOB_TIMEOUT="120"
    )
    url = f"http://127.0.0.1:{port}/webhook"
    log = bench.logs / f"workers-{workers}.log"
    queue = Queue("ghapp", connection=bench.redis)
    sent: dict[str, float] = {}
    jobs: list[str] = []

    def send(item: tuple[str, str]) -> None:
        body = json.dumps(bench.simulator.push_payload(item[0], None, item[1])).encode()
        delivery = uuid.uuid4().hex
        sent[delivery] = time.time()
        answer = requests.post(
            url,
            data=body,
            timeout=30,
            headers={
                "Content-Type": "application/json",
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": delivery,
                "X-Hub-Signature-256": signature_for(body, SECRET.encode()),
            },
        )
        answer.raise_for_status()
        jobs.append(answer.json()["job_id"])

    def all_done() -> bool:
        if queue.failed_job_registry.count:
            raise RuntimeError(f"{queue.failed_job_registry.count} jobs failed: see {log}")
        return queue.finished_job_registry.count >= len(pushes)

    with serve_ghapp(bench, port) as web, _workers(workers, env, log, bench.home) as pool:
        wait_until(lambda: ready(url), 30, "ghapp to answer")
        wait_until(lambda: len(Worker.all(connection=bench.redis)) >= workers, 30, "workers")
        # Where the machine's CPU goes: ghapp's processes, Redis, and this process (the
        # simulator, its git http-backend children, and the threads sending the pushes).
        owners = {
            "ghapp workers and their git": [p.pid for p in pool],
            "web": [web.pid, *children_of(web.pid)],
            "Redis": [bench.redis_server.process.pid],
        }
        cpu_before = {k: sum(map(cpu_seconds, pids)) for k, pids in owners.items()}
        here_before = sum(os.times()[:4])
        started = time.time()
        with ThreadPoolExecutor(8) as threads:
            list(threads.map(send, pushes))
        wait_until(all_done, 900, "all pushes processed")
        cpu = {k: sum(map(cpu_seconds, pids)) - cpu_before[k] for k, pids in owners.items()}
        cpu["GitHub simulator and load"] = sum(os.times()[:4]) - here_before
        peak = max([peak_rss_mib(p.pid) for p in pool] or [0.0])
    latencies, overheads, last_end = [], [], started
    for job in Job.fetch_many(jobs, connection=bench.redis):
        assert job is not None
        assert job.get_status() == JobStatus.FINISHED
        assert job.ended_at is not None
        assert job.started_at is not None
        seconds = job.return_value()["seconds"]
        end = job.ended_at.replace(tzinfo=UTC).timestamp()
        last_end = max(last_end, end)
        latencies.append(end - sent[job.kwargs["delivery"]])
        run = (job.ended_at - job.started_at).total_seconds()
        overheads.append(run - seconds["fetch"] - seconds["processing"])
    mints = len(bench.simulator.issued_tokens) - mints_before
    repos = len({name for name, _ in pushes})
    p99 = statistics.quantiles(latencies, n=100)[98]
    row = [
        f"{len(pushes) / (last_end - started) * 60:,.0f}",
        f"{statistics.median(latencies):.2f} s",
        f"{p99:.2f} s",
        f"{mints / len(pushes):.3f} ({mints} for {repos} repositories)",
        f"{statistics.median(overheads) * 1000:.0f} ms",
        ", ".join(f"{k} {v / len(pushes) * 1000:.0f}" for k, v in cpu.items()),
        f"{sum(cpu.values()) / len(pushes) * 1000:.0f} ms → {ceiling(cpu, len(pushes)):,.0f}",
    ]
    return row, peak


def ceiling(cpu: dict[str, float], pushes: int) -> float:
    """Pushes per minute the machine's cores could process at this CPU cost per push."""
    return (os.cpu_count() or 1) * 60 / (sum(cpu.values()) / pushes)


@contextmanager
def _workers(count: int, env: dict[str, str], log: Path, cwd: Path) -> Iterator[list[Any]]:
    started = []
    try:
        for _ in range(count):
            context = process([sys.executable, "-m", "ghapp", "worker"], env, log, cwd)
            started.append((context, context.__enter__()))
        yield [child for _, child in started]
    finally:
        for context, _ in started:
            context.__exit__(None, None, None)


# ---------------------------------------------------------------- 4: checkout


def long_history(bench: Bench) -> tuple[str, str]:
    """3,000 commits, about 2 MB of tree and some 20 MB of packed history."""
    name = "bench/long-history"
    rng = random.Random(7)
    words = [f"w{n:04d}" for n in range(4096)]

    def text(size: int) -> str:
        return " ".join(rng.choice(words) for _ in range(size // 6)) + "\n"

    bench.simulator.create_repository(
        name,
        installation_id=INSTALLATION,
        files={f"docs/page_{i}.txt": text(10_000) for i in range(200)},
    )
    sha = ""
    for n in range(3000):
        sha = bench.simulator.commit(
            name, files={f"docs/page_{n % 200}.txt": text(10_000)}, message=f"Revise page {n % 200}"
        )
    return name, sha


def checkout_cost(bench: Bench, report: Report) -> None:
    name, sha = long_history(bench)
    repo = bench.simulator.repository(name)
    token = _token(bench, repo.id)
    # git's own clones, the references, get the token as a header (a benchmark's shortcut).
    credential = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    env = {
        **os.environ,
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {credential}",
    }

    def ours(path: Path) -> None:
        fetch_commit(
            path,
            repo.clone_url,
            sha,
            token=token,
            github_url=bench.simulator.url,
            limits=Limits(max_bytes=10**10, max_files=10**7, timeout=300),
        )

    def shallow(path: Path) -> None:
        subprocess.run(
            [
                "git",
                "clone",
                "--quiet",
                "--depth",
                "1",
                "--single-branch",
                "--branch",
                "main",
                repo.clone_url,
                str(path),
            ],
            env=env,
            check=True,
        )

    def full(path: Path) -> None:
        subprocess.run(["git", "clone", "--quiet", repo.clone_url, str(path)], env=env, check=True)

    rows = []
    times: dict[str, Figure] = {}
    for label, run in (
        ("ghapp's checkout", ours),
        ("git clone --depth 1", shallow),
        ("git clone (full)", full),
    ):
        figure, size = Figure(), 0
        for _ in range(max(3, bench.rounds)):
            path = Path(tempfile.mkdtemp(dir=bench.home))
            target = path / "repo"
            started = time.perf_counter()
            run(target)
            figure.values.append(time.perf_counter() - started)
            size = directory_usage(target / ".git" / "objects")[0]
            shutil.rmtree(path)
        times[label] = figure
        rows.append([label, figure.show(" s", 3), f"{size / 1e6:.1f} MB"])
    report.add("## 4. Checkout of one commit")
    report.add(
        "A repository of 3,000 commits served by the simulator (git http-backend on loopback). "
        "Bytes: the objects received (size of .git/objects afterwards)."
    )
    report.add()
    report.table(["method", "time", "bytes"], rows)
    ours_time, shallow_time = times["ghapp's checkout"], times["git clone --depth 1"]
    report.add(
        f"ghapp / shallow clone: {ratio(ours_time, shallow_time)}; "
        f"full clone / ghapp: {ratio(times['git clone (full)'], ours_time)}."
    )
    report.add()


def _token(bench: Bench, repository_id: int) -> str:
    from worker.github_api import GitHubAPI
    from worker.tokens import app_jwt

    api = GitHubAPI(bench.simulator.api_url)
    answer = api.create_installation_token(
        app_jwt(app_id=APP_ID, private_key=bench.private_key, now=time.time()),
        INSTALLATION,
        repository_ids=(repository_id,),
        permissions={"contents": "read"},
    )
    return str(answer["token"])


# ---------------------------------------------------------------- main


def versions() -> str:
    from importlib.metadata import version

    import gunicorn
    import rq

    git = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    wrk_version = (
        (wrk.stdout or wrk.stderr).splitlines()[0] if (wrk.stdout or wrk.stderr) else "wrk"
    )
    server = subprocess.run(
        [redis_server_binary(), "--version"], capture_output=True, text=True
    ).stdout.split()
    server_version = next((w for w in server if w.startswith("v=")), "v=?")[2:]
    return (
        f"Python {platform.python_version()}, Flask {version('flask')}, gunicorn "
        f"{gunicorn.__version__}, RQ {rq.__version__}, redis-server {server_version} (embedded), "
        f"{git}, {wrk_version.split(' [')[0]}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--output", default=str(HERE / "RESULTS.md"))
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="run only these sections (for investigating; RESULTS.md wants them all)",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("bench: wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    report = Report()
    home = Path(tempfile.mkdtemp(prefix="ghapp-bench-"))
    bench = Bench(home, args.rounds, args.seconds)
    try:
        report.add("# ghapp benchmark results")
        report.add()
        report.add(
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores "
            f"({platform.machine()}, {platform.system()} {platform.release()}); load generator "
            f"on the same machine. {versions()}. Reproduce: `./run bench`."
        )
        report.add()
        payloads = make_payloads(bench)
        sizes = ", ".join(f"{k}: {v.stat().st_size:,} bytes" for k, v in payloads.items())
        report.add(f"Payloads: {sizes}.")
        report.add()
        peaks: dict[str, float] = {}
        if "acknowledge" in args.only:
            peaks.update(acknowledge(bench, payloads, report)["peaks"])
            profile_web(bench, payloads, report)
        if "backlog" in args.only:
            backlog(bench, payloads, report)
        if "processed" in args.only:
            peaks.update(push_to_processed(bench, report))
        if "checkout" in args.only:
            checkout_cost(bench, report)
        report.add("## 5. Peak memory (VmHWM)")
        report.add()
        report.table(["process", "peak RSS"], [[k, f"{v:.0f} MiB"] for k, v in peaks.items()])
        if "fuzz" in args.only:
            from bench.fuzz import run_fuzz  # 100,000 mutated deliveries; prints its counts

            run_fuzz(report.add)
        if "sandbox" in args.only:
            from bench.sandbox_cost import run_sandbox_cost  # a job's command bare and sandboxed

            run_sandbox_cost(report.add)
    finally:
        bench.close()
        shutil.rmtree(home, ignore_errors=True)
    Path(args.output).write_text("\n".join(report.lines) + "\n")
    print(f"bench: results written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
