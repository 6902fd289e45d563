"""How a job can fail, as far as retrying is concerned: worth another try, or not."""

from __future__ import annotations


class Permanent(Exception):
    """Retrying will not help; the message says what to fix."""


class Transient(Exception):
    """Worth another try later: GitHub, git or the network had a bad moment."""


# A rate limit this short is waited out in place; a longer one reschedules the job rather than
# hold a worker idle.
SHORT_WAIT = 10.0


class DeadlinePassed(Transient):
    """JOB_TIMEOUT ran out before the work was done (the job may be tried again)."""


class RateLimited(Transient):
    """GitHub asked us to wait ``wait`` seconds before the next call."""

    def __init__(self, message: str, wait: float) -> None:
        super().__init__(message)
        self.wait = wait


def waits_in_place(exc: RateLimited) -> bool:
    """Whether to wait out ``exc`` where it happened (else: reschedule the job)."""
    return exc.wait <= SHORT_WAIT
