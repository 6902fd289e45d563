"""When to try a failed fetch again: a token GitHub does not know yet, a stale one, a bad minute.

- refused (401/403) within a few seconds of minting: GitHub has not replicated it yet, wait a
  little and try the same token again;
- refused later: drop the cached token and try once more with a freshly minted one;
- network errors and 5xx: exponential backoff with jitter, a few times.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from .checkout import CheckoutFailed, CheckoutTimedOut, Limits, fetch_commit
from .failures import DeadlinePassed, Permanent
from .tokens import Token

log = logging.getLogger("ghapp.worker.fetch")

FRESH_TOKEN_GRACE = 5.0  # seconds after minting during which a 401 means "not replicated yet"
FRESH_TOKEN_PAUSE = 0.5
TRANSIENT_TRIES = 4
BACKOFF_BASE = 0.5
BACKOFF_MAX = 8.0


class TokenGetter(Protocol):
    """The job's installation token: cached, or (``fresh``) minted anew."""

    def __call__(self, *, fresh: bool = False) -> Token: ...


def backoff(attempt: int) -> float:
    """Exponential backoff with full jitter, for the ``attempt``-th retry (1-based)."""
    return random.uniform(0, min(BACKOFF_MAX, BACKOFF_BASE * 2**attempt))


def fetch_with_retries(
    path: Path,
    *,
    clone_url: str,
    sha: str,
    github_url: str,
    get_token: TokenGetter,
    limits: Limits,
    deadline: float,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Fetch ``sha`` into ``path``: each attempt within ``limits`` (CHECKOUT_TIMEOUT, _MAX_MB,
    _MAX_FILES), all of them before ``deadline`` (``time.monotonic()``, the job's JOB_TIMEOUT).
    ``get_token(fresh=True)`` must drop the cached token and mint a fresh one."""
    token = get_token()
    refreshed = False
    failures = 0
    while True:
        shutil.rmtree(path, ignore_errors=True)  # every attempt starts from nothing
        left = deadline - time.monotonic()
        if left < 1:
            raise DeadlinePassed("JOB_TIMEOUT ran out before the checkout was done; trying later")
        try:
            fetch_commit(
                path,
                clone_url,
                sha,
                token=token.value,
                github_url=github_url,
                limits=dataclasses.replace(limits, timeout=min(limits.timeout, left)),
            )
            return
        except CheckoutTimedOut:
            if left < limits.timeout:  # cut short by the job's own time, not by CHECKOUT_TIMEOUT
                raise DeadlinePassed(
                    "JOB_TIMEOUT ran out during the checkout; trying later"
                ) from None
            raise
        except CheckoutFailed as exc:
            if exc.status in (401, 403):
                if token.minted_at is not None and clock() - token.minted_at < FRESH_TOKEN_GRACE:
                    log.info(
                        "a token minted %.1f s ago was refused: waiting for GitHub to know it",
                        clock() - token.minted_at,
                    )
                    sleep(FRESH_TOKEN_PAUSE)
                    continue
                if not refreshed:
                    log.info("the cached token was refused: minting a fresh one")
                    refreshed = True
                    token = get_token(fresh=True)
                    continue
                raise Permanent(
                    f"{exc}: a freshly minted token was refused too; check that the App is "
                    "installed on this repository with Contents: read"
                ) from None
            failures += 1
            if failures >= TRANSIENT_TRIES:
                raise
            pause = backoff(failures)
            log.warning("%s; trying again in %.1f s", exc, pause)
            sleep(pause)
