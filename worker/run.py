"""Start one worker process: an RQ worker on ghapp's queue, tuned so no job is lost or stuck.

- A job whose worker was killed is noticed within about half a minute (short heartbeats and
  frequent maintenance; RQ's defaults take up to ten minutes) and runs again from scratch.
- On SIGTERM (a deploy, Heroku's stop) the running job gets SHUTDOWN_GRACE seconds to finish,
  then is interrupted and put back through its retry policy, before the platform's SIGKILL.
"""

from __future__ import annotations

import logging
import time
from types import TracebackType
from typing import Any

import redis
from rq import Queue
from rq.job import Job
from rq.job_lifecycle import call_exception_handlers
from rq.timeouts import JobTimeoutException
from rq.worker import HerokuWorker

from ghapp.core.logs import remember_job
from ghapp.core.redis_connection import connect, describe
from ghapp.core.settings import ConfigError, Settings, check_private_key, private_key_file_warning

# Imported here, before RQ forks a work horse per job, so each horse starts with the job's
# modules (GitPython among them) already loaded instead of importing them again.
from . import jobs, runtime
from .failures import Permanent, Transient
from .processing import ProcessingError, load_processor
from .redelivery import schedule_next
from .workspace import remove_abandoned

log = logging.getLogger("ghapp.worker")

JOB_MONITORING_INTERVAL = 5  # seconds between heartbeats of a running job
HEARTBEAT_GRACE = 10  # a job's heartbeat expires this long after it was due
MAINTENANCE_INTERVAL = 10  # how often a live worker looks for abandoned jobs
# An idle worker waits for work WORKER_TTL - 15 s at a time and looks after maintenance only in
# between: RQ's default (420) would leave an abandoned job unnoticed for minutes.
WORKER_TTL = 30
REDIS_WAIT = 60  # seconds a starting worker waits for Redis before giving up


LOGGED_TAIL_LINES = 10  # of a failed step's output, in its one log line
LOGGED_TAIL_CHARS = 2000
# What a job can fail with that ghapp foresaw: logged in one line, without RQ's traceback.
FORESEEN = (Permanent, Transient, JobTimeoutException)


class GhappJob(Job):
    """RQ's job, noting the delivery of each job this process loads: RQ's own lines about the
    job (taken, OK, failed) then say it, without a Redis round trip per line."""

    def restore(self, raw_data: Any) -> Any:
        restored = super().restore(raw_data)
        if isinstance(self.meta, dict):
            remember_job(self.id, self.meta.get("delivery"))
        return restored


def failure_line(job: Job, exc: BaseException) -> str:
    """One line for a job that failed as ghapp foresaw: its reason, and its output's tail."""
    reason = getattr(exc, "reason", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    line = f"job {job.id} failed{'' if job.retries_left else ' for good'}: {reason}"
    output = getattr(exc, "output", "") or ""
    if output.strip():
        tail = " ⏎ ".join(output.rstrip("\n").splitlines()[-LOGGED_TAIL_LINES:])
        line += f"; output's tail: {tail[-LOGGED_TAIL_CHARS:]}"
    return line


class GhappWorker(HerokuWorker):
    """RQ's HerokuWorker (the horse ignores SIGTERM and is interrupted after a grace period),
    with heartbeats that expire in seconds rather than RQ's minute, and one log line (no
    traceback) for a job that fails in a way ghapp foresaw."""

    job_class = GhappJob

    def handle_exception(
        self,
        job: Job,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        if not isinstance(exc, FORESEEN):
            super().handle_exception(job, exc_type, exc, tb)  # RQ's line, with the traceback
            return
        delivery = job.meta.get("delivery") if isinstance(job.meta, dict) else None
        log.error("%s", failure_line(job, exc), extra={"delivery": delivery or "-", "job": job.id})
        call_exception_handlers(self._exc_handlers, job, exc_type, exc, tb)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        interval = self.job_monitoring_interval
        if job.timeout and job.timeout > 0:
            interval = int(max(1, min(job.timeout - working_time, interval)))
        return interval + HEARTBEAT_GRACE


def horse_killed(job: Job, pid: int, status: int, rusage: object) -> None:
    """The job's process was killed (the OOM killer, a kill -9): stop what is left of its
    processing command and remove its directory now rather than at the next job. A job that
    will not run again gets its check run completed here: nothing else would."""
    log.warning("the process running job %s was killed (status %s)", job.id, status)
    remove_abandoned()
    if not job.retries_left:
        jobs.report_killed(job, status)


def build_worker(settings: Settings) -> GhappWorker:
    assert settings.redis_url
    connection = connect(settings.redis_url)
    queue = Queue(settings.queue_name, connection=connection)
    worker = GhappWorker(
        [queue],
        connection=connection,
        job_monitoring_interval=JOB_MONITORING_INTERVAL,
        maintenance_interval=MAINTENANCE_INTERVAL,
        worker_ttl=WORKER_TTL,
        work_horse_killed_handler=horse_killed,
        job_class=GhappJob,
    )
    worker.imminent_shutdown_delay = settings.shutdown_grace
    return worker


def wait_for_redis(connection: redis.Redis, url: str, timeout: float = REDIS_WAIT) -> None:
    """Wait for Redis to answer (it may start after the worker); ConfigError if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection.ping()
            return
        except redis.RedisError as exc:
            if time.monotonic() > deadline:
                raise ConfigError(
                    f"Redis at {describe(url)} did not answer for {timeout:.0f} s "
                    f"({type(exc).__name__}): check REDIS_URL and that Redis is running"
                ) from None
            log.warning("Redis is not answering (%s); trying again", type(exc).__name__)
            time.sleep(2)


def run_worker(settings: Settings, *, burst: bool = False) -> bool:
    settings.require_redis()
    settings.require_worker()
    assert settings.private_key
    assert settings.redis_url
    check_private_key(settings.private_key)
    warning = private_key_file_warning(settings.private_key_path)
    if warning:
        log.warning(warning)
    if settings.processor:  # a PROCESSOR that cannot load would fail every job: say so now
        try:
            load_processor(settings.processor)
        except ProcessingError as exc:
            raise ConfigError(str(exc)) from None
    rt = runtime.configure(settings)
    if settings.process_command:
        if rt.sandbox_error and settings.sandbox == "bwrap":
            raise ConfigError(rt.sandbox_error)
        if rt.sandbox_error:
            log.error("%s; until then every job with a PROCESS_COMMAND fails", rt.sandbox_error)
        elif rt.sandbox is None:
            log.warning(
                "SANDBOX=none: PROCESS_COMMAND runs unsandboxed, as this worker's user: it can "
                "read that user's files (.env, key files, other jobs' checkouts), see its "
                "processes and reach Redis and the network; use it only for trusted repositories"
            )
        else:
            log.info(
                "PROCESS_COMMAND runs in a bubblewrap sandbox (%s, network %s)",
                rt.sandbox.bwrap,
                "on" if rt.sandbox.network else "off",
            )
    remove_abandoned()
    wait_for_redis(connect(settings.redis_url), settings.redis_url)
    worker = build_worker(settings)
    schedule_next(worker.queues[0], settings.redelivery_interval)
    return worker.work(burst=burst, with_scheduler=True, logging_level="INFO")
