"""Children that hear of their parent's death: a process that starts others (``ghapp serve``, a
job's processing command) must not leave them running when it is killed."""

from __future__ import annotations

import ctypes
import signal
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return prctl
    except (OSError, AttributeError):
        return None  # not Linux


# Looked up once, here: a child between fork and exec must not load libraries.
_PRCTL = _load_prctl()


def signal_on_parent_death(signum: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` after which the child gets ``signum`` when its parent dies.

    The parent's ignored signals are inherited, and a shell cannot trap a signal ignored on
    entry (RQ's work horse ignores SIGTERM and SIGINT): both go back to their defaults first."""

    def preexec() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if _PRCTL is not None:
            _PRCTL(PR_SET_PDEATHSIG, signum)

    return preexec
