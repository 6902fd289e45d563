"""Section 3, push to processed: 500 pushes over 20 repositories through the whole path (web
process, Redis, RQ worker processes fetching from the simulator), with 1, 2 and 4 workers."""

from __future__ import annotations

import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

from rq import Queue, Worker
from rq.job import Job, JobStatus

from bench.memory import peak_rss_mib
from bench.stage import INSTALLATION, SECRET, Stage, answers, serve_ghapp, started
from ghapp.local import free_port, wait_until
from tests.support import ghapp, process_children, signed_post

REPOSITORIES = 20
PUSHES_EACH = 25
THREADS = 8
WORKERS = (1, 2, 4)
SETTINGS = {"PROCESS_COMMAND": "true", "SUPERSEDE_PUSHES": "false", "JOB_TIMEOUT": "120"}


@dataclass
class WorkerRun:
    """Every push sent to a fresh web process with ``workers`` worker processes."""

    workers: int
    seconds: float  # from the first push sent to the last job ended
    latencies: list[float]  # webhook sent → job ended, by push
    overheads: list[float]  # RQ's run time of a job minus its fetch and processing, by job
    mints: int  # installation tokens the simulator issued
    cpu: dict[str, float]  # CPU seconds of each part of the machine during the burst
    peak_mib: float  # the largest peak RSS of the worker processes


@dataclass
class Processed:
    pushes: int
    repositories: int
    threads: int
    cores: int
    runs: list[WorkerRun] = field(default_factory=list)

    @property
    def peaks(self) -> dict[str, float]:
        return {f"worker process ({run.workers} running)": run.peak_mib for run in self.runs}


def measure(stage: Stage) -> Processed:
    repos = make_repositories(stage, REPOSITORIES, PUSHES_EACH)
    pushes = [(name, shas[k]) for k in range(PUSHES_EACH) for name, shas in repos]
    result = Processed(len(pushes), len(repos), THREADS, os.cpu_count() or 1)
    for workers in WORKERS:
        result.runs.append(run_pushes(stage, pushes, workers))
    return result


def make_repositories(stage: Stage, count: int, pushes_each: int) -> list[tuple[str, list[str]]]:
    repos = []
    for n in range(count):
        name = f"bench/service-{n}"
        files = {f"src/file_{i}.py": f"# file {i}\n" * 20 for i in range(30)}
        stage.simulator.create_repository(name, installation_id=INSTALLATION, files=files)
        shas = [
            stage.simulator.commit(name, files={"CHANGES": f"{n}-{k}\n"}, message=f"push {k}")
            for k in range(pushes_each)
        ]
        repos.append((name, shas))
    return repos


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and of its children it has waited for (a worker's work horses and
    their git processes)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def run_pushes(stage: Stage, pushes: list[tuple[str, str]], workers: int) -> WorkerRun:
    stage.redis.flushdb()
    mints_before = len(stage.simulator.issued_tokens)
    port = free_port()
    env = stage.env(PORT=str(port), **SETTINGS)
    url = f"http://127.0.0.1:{port}/webhook"
    queue = Queue("ghapp", connection=stage.redis)
    sent: dict[str, float] = {}
    jobs: list[str] = []

    def send(item: tuple[str, str]) -> None:
        body = json.dumps(stage.simulator.push_payload(item[0], None, item[1])).encode()
        delivery = uuid.uuid4().hex
        sent[delivery] = time.time()
        answer = signed_post(url, body, secret=SECRET.encode(), delivery=delivery)
        answer.raise_for_status()
        jobs.append(answer.json()["job_id"])

    def all_done() -> bool:
        if queue.failed_job_registry.count:
            failed = queue.failed_job_registry.count
            raise RuntimeError(f"{failed} jobs failed: see the worker logs in {stage.logs}")
        return queue.finished_job_registry.count >= len(pushes)

    with ExitStack() as running:
        web = running.enter_context(serve_ghapp(stage, port))
        pool = [
            running.enter_context(
                started(stage, f"worker-{workers}-{n}", ghapp(["worker"]), env, stage.home)
            )
            for n in range(workers)
        ]
        wait_until(lambda: answers(url), 30, "ghapp to answer")
        wait_until(lambda: len(Worker.all(connection=stage.redis)) >= workers, 30, "workers")
        # Where the machine's CPU goes: ghapp's processes, Redis, and this process (the
        # simulator, its git http-backend children, and the threads sending the pushes).
        owners = {
            "ghapp workers and their git": [p.pid for p in pool],
            "web": [web.pid, *process_children().get(web.pid, [])],
            "Redis": [stage.redis_server.process.pid],
        }
        cpu_before = {k: sum(map(cpu_seconds, pids)) for k, pids in owners.items()}
        here_before = sum(os.times()[:4])
        started_at = time.time()
        with ThreadPoolExecutor(THREADS) as threads:
            list(threads.map(send, pushes))
        wait_until(all_done, 900, "all pushes processed")
        cpu = {k: sum(map(cpu_seconds, pids)) - cpu_before[k] for k, pids in owners.items()}
        cpu["GitHub simulator and load"] = sum(os.times()[:4]) - here_before
        peak = max([peak_rss_mib(p.pid) for p in pool] or [0.0])
    latencies, overheads, last_end = [], [], started_at
    for job in Job.fetch_many(jobs, connection=stage.redis):
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
    mints = len(stage.simulator.issued_tokens) - mints_before
    return WorkerRun(workers, last_end - started_at, latencies, overheads, mints, cpu, peak)
