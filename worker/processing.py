"""Run the user's processing step in a checkout: a Python callable, a shell command, or a summary.

The command gets the push's identifiers and the payload's path in its environment, never a
token or the App's secrets; its output is kept, bounded; its exit status decides success.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ghapp.local import signal_on_parent_death

from .failures import Permanent, Transient

log = logging.getLogger("ghapp.worker.processing")

OUTPUT_LIMIT = 64 * 1024  # bytes of command output kept (the tail)
COMMAND_GROUP_FILE = "command.pgid"
COMMAND_MARK = "ghapp-command"  # the guard shell's $0, to recognise it in /proc
# The command runs under a shell that, told by the kernel that the job's process died
# (PR_SET_PDEATHSIG: SIGTERM), kills the command's whole process group, children included.
GUARD = 'trap "kill -KILL 0" TERM; sh -c "$1" & wait $!'
# A shell reports a child killed by SIGKILL or SIGTERM as 128 + the signal number.
KILLED_STATUSES = (128 + signal.SIGKILL, 128 + signal.SIGTERM)
# Settings the processing command must never see.
SECRET_ENV = (
    "GITHUB_PRIVATE_KEY",
    "GITHUB_PRIVATE_KEY_PATH",
    "GITHUB_WEBHOOK_SECRET",
    "TOKEN_CACHE_KEY",
    "REDIS_URL",
)


def _secret(name: str) -> bool:
    """ghapp's own secrets, and any Redis URL (Heroku adds REDIS_TLS_URL, HEROKU_REDIS_*_URL:
    they hold the password)."""
    upper = name.upper()
    return (
        name in SECRET_ENV
        or upper.startswith("GIT_CONFIG")
        or ("REDIS" in upper and "URL" in upper)
    )


class ProcessingError(Permanent):
    """The processing step failed; the message says how, with the tail of its output."""


class ProcessingInterrupted(Transient):
    """The command was killed by a signal from outside (a shutdown, the OOM killer): retry."""


@dataclass(frozen=True)
class PushContext:
    """What a PROCESSOR callable receives."""

    path: Path
    repository: str
    ref: str
    sha: str
    delivery: str
    payload: dict[str, Any] = field(repr=False)
    event: str = "push"


def load_processor(spec: str) -> Callable[[PushContext], Any]:
    """Import ``module:function``; raise ProcessingError with what to fix if it is not there."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ProcessingError(f"PROCESSOR={spec!r} is not of the form module:function")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ProcessingError(f"PROCESSOR={spec!r} cannot be loaded: {exc}") from None
    if not callable(target):
        raise ProcessingError(f"PROCESSOR={spec!r} is not callable")
    return target


def _tail(data: bytes) -> str:
    text = data[-OUTPUT_LIMIT:].decode("utf-8", errors="replace")
    return text if len(data) <= OUTPUT_LIMIT else "[… output truncated …]\n" + text


def command_environment(
    base: Mapping[str, str], context: PushContext, event_path: Path
) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not _secret(k)}
    env.update(
        GHAPP_REPOSITORY=context.repository,
        GHAPP_REF=context.ref,
        GHAPP_SHA=context.sha,
        GHAPP_DELIVERY=context.delivery,
        GHAPP_EVENT=context.event,
        GHAPP_EVENT_PATH=str(event_path),
    )
    return env


def run_command(
    command: str, context: PushContext, *, event_path: Path, timeout: float | None
) -> dict[str, Any]:
    """Run ``command`` in the checkout; return its exit status and output, or raise on failure."""
    event_path.write_text(json.dumps(context.payload))
    process = subprocess.Popen(
        ["sh", "-c", GUARD, COMMAND_MARK, command],
        cwd=context.path,
        env=command_environment(os.environ, context, event_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so a timeout stops all of it
        preexec_fn=signal_on_parent_death(signal.SIGTERM),
    )
    # If this job's process is killed, a later job removes what is left of its group.
    (event_path.parent / COMMAND_GROUP_FILE).write_text(str(process.pid))
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        output, _ = process.communicate()
        raise ProcessingError(
            "PROCESS_COMMAND ran past JOB_TIMEOUT and was stopped; last output:\n" + _tail(output)
        ) from None
    finally:
        # Also reached when the job itself is being stopped (RQ's timeout, a shutdown).
        _kill_group(process)
    result = {"exit_status": process.returncode, "output": _tail(output)}
    log.info("PROCESS_COMMAND exited %s; output:\n%s", process.returncode, result["output"])
    if process.returncode < 0 or process.returncode in KILLED_STATUSES:
        raise ProcessingInterrupted(
            f"PROCESS_COMMAND was killed (status {process.returncode}); it will be tried again"
        )
    if process.returncode != 0:
        raise ProcessingError(
            f"PROCESS_COMMAND exited with status {process.returncode}; last output:\n"
            f"{result['output']}"
        )
    return result


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def summarize(path: Path, sha: str) -> dict[str, Any]:
    """A short description of a checkout: its commit, number of files and their total size."""
    files = 0
    size = 0
    for root, dirs, names in os.walk(path):
        if ".git" in dirs:
            dirs.remove(".git")
        for name in names:
            files += 1
            size += os.lstat(os.path.join(root, name)).st_size
    return {"sha": sha, "files": files, "bytes": size}


def process(
    context: PushContext,
    *,
    processor: str | None,
    command: str | None,
    event_path: Path,
    timeout: float | None,
) -> dict[str, Any]:
    """Run what is configured in the checkout; the job's result."""
    result: dict[str, Any] = {"summary": summarize(context.path, context.sha)}
    if processor:
        try:
            value = load_processor(processor)(context)
        except (Transient, ProcessingError):
            raise
        except Exception as exc:
            raise ProcessingError(
                f"PROCESSOR {processor} raised {type(exc).__name__}: {exc}"
            ) from exc
        result["processor"] = value if _is_json(value) else repr(value)
    if command:
        result["command"] = run_command(command, context, event_path=event_path, timeout=timeout)
    return result


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
