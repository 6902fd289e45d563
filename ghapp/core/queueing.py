"""How push jobs are queued, shared by the web process (which enqueues) and the worker."""

from __future__ import annotations

from rq import Retry

# The job stops its own work at JOB_TIMEOUT; RQ's hard stop comes this much later, leaving time
# to kill the processing command, remove the checkout and complete the check run.
CLEANUP_SECONDS = 20
# Transient failures (GitHub or git unreachable, a worker killed mid-job) are tried again after
# these many seconds; permanent ones fail at once (the job sets its retries left to zero). The
# first retry is immediate: it must not wait for RQ's scheduler, whose lock a killed worker may
# hold for a minute.
RETRY_INTERVALS = (0, 60, 300)


def retry_policy() -> Retry:
    return Retry(max=len(RETRY_INTERVALS), interval=list(RETRY_INTERVALS))


def hard_timeout(job_timeout: int) -> int:
    return job_timeout + CLEANUP_SECONDS
