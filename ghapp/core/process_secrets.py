"""Keep a process's secrets where no other process can read them.

Every ghapp process that holds a secret calls ``protect_process()`` first: it becomes
non-dumpable (its ``/proc/<pid>/environ`` and ``mem`` are then owned by root, closed to its own
uid) and takes the secret variables out of the environment its children inherit, keeping them in
memory for ``settings.environment()``. ghapp's own children get their secrets over a pipe
(``handoff``), never in an environment or on a command line.
"""

from __future__ import annotations

import ctypes
import json
import os
from collections.abc import Mapping, MutableMapping

PR_SET_DUMPABLE = 4
HANDOFF_VARIABLE = "GHAPP_SECRETS_FD"
# ghapp's own secrets; any variable holding a Redis URL is one too (Heroku adds REDIS_TLS_URL
# and HEROKU_REDIS_<COLOR>_URL, each with the password).
SECRET_NAMES = frozenset(
    {
        "GITHUB_PRIVATE_KEY",
        "GITHUB_WEBHOOK_SECRET",
        "GITHUB_CLIENT_SECRET",
        "TOKEN_CACHE_KEY",
        "REDIS_URL",
        "DASHBOARD_PASSWORD",
        "METRICS_TOKEN",
    }
)

_withheld: dict[str, str] = {}


def is_secret(name: str) -> bool:
    upper = name.upper()
    return upper in SECRET_NAMES or ("REDIS" in upper and "URL" in upper)


def make_undumpable() -> bool:
    """``prctl(PR_SET_DUMPABLE, 0)``; False where the system has no prctl (not Linux)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    return bool(prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0)


def withhold(environ: MutableMapping[str, str]) -> dict[str, str]:
    """Move the secret variables out of ``environ`` (children would inherit them) into memory;
    read those a parent handed over on the pipe named by ``GHAPP_SECRETS_FD``."""
    fd_text = environ.pop(HANDOFF_VARIABLE, "")
    if fd_text.isdigit():
        with os.fdopen(int(fd_text), "rb") as pipe:
            handed = json.loads(pipe.read() or b"{}")
        _withheld.update({str(k): str(v) for k, v in handed.items()})
    for name in [name for name in environ if is_secret(name)]:
        _withheld[name] = environ.pop(name)
    return dict(_withheld)


def protect_process() -> None:
    """Call first thing in every process that holds a secret."""
    make_undumpable()
    withhold(os.environ)


def withheld() -> dict[str, str]:
    """The secrets this process took out of its environment (for reading its settings)."""
    return dict(_withheld)


def handoff(
    env: Mapping[str, str], secrets: Mapping[str, str] | None = None
) -> tuple[dict[str, str], int]:
    """A child's environment without secrets, and the read end of a pipe that holds them:
    the secret variables of ``env`` and ``secrets``.

    Pass the fd to the child (``pass_fds``) and close it here once the child is started: the
    child's ``protect_process()`` reads it. A pipe holds 64 KiB before a writer blocks, far more
    than a few keys and URLs need.
    """
    handed = {k: v for k, v in env.items() if is_secret(k)}
    handed.update(secrets or {})
    payload = json.dumps(handed).encode()
    read_end, write_end = os.pipe()
    try:
        if len(payload) > 65536:
            raise ValueError("secrets too large to hand over on a pipe")
        os.write(write_end, payload)
    finally:
        os.close(write_end)
    child = {k: v for k, v in env.items() if not is_secret(k)}
    child[HANDOFF_VARIABLE] = str(read_end)
    return child, read_end
