"""Run the user's processing step in a checkout: a Python callable, a shell command, or a summary.

The command runs in the sandbox (``sandbox.py``) unless SANDBOX=none, with an allow-listed
environment: the push's identifiers and the payload's path, never a token or the App's secrets.
Its output is kept, bounded; its exit status decides success.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ghapp.core.child_processes import signal_on_parent_death
from ghapp.core.process_secrets import is_secret

from .checkout import Limits, enforced
from .failures import Permanent, Transient
from .sandbox import EVENT_FILE, RESULT_FILE, Sandbox
from .sandbox import HOME as SANDBOX_HOME
from .step_report import MAX_FILE_BYTES, StepReport, from_mapping, read_result_file
from .workspace import COMMAND_MARK, JobDirectory

log = logging.getLogger("ghapp.worker.processing")

OUTPUT_LIMIT = 64 * 1024  # bytes of command output kept (the tail)
READ_CHUNK = 64 * 1024
POLL_SECONDS = 0.5  # how often a silent command is checked for having exited
EXITED_GRACE = 1.0
WATCH_SECONDS = 1.0  # how often the checkout is measured while the command runs
# Unsandboxed, the command runs under a shell that, told by the kernel that the job's process
# died (PR_SET_PDEATHSIG: SIGTERM), kills the command's whole process group, children included.
# In the sandbox its PID namespace does that: when bwrap dies, everything inside dies.
GUARD = 'trap "kill -KILL 0" TERM; sh -c "$1" & wait $!'
# A shell reports a child killed by SIGKILL or SIGTERM as 128 + the signal number.
KILLED_STATUSES = (128 + signal.SIGKILL, 128 + signal.SIGTERM)
# What the command's environment takes from the worker's, besides PROCESS_ENV's names.
PASSED_ENV = ("PATH", "LANG", "LC_ALL")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


class ProcessingError(Permanent):
    """The processing step failed; the message says how, with the tail of its output.

    ``reason`` says it in one line, ``output`` is the output's tail, ``exit_status`` the
    command's, and ``report`` what the step reported of itself (a linter's annotations)."""

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        output: str = "",
        exit_status: int | None = None,
        report: StepReport | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason or message.splitlines()[0]
        self.output = output
        self.exit_status = exit_status
        self.report = report or StepReport()


class ProcessingTimedOut(ProcessingError):
    """The command ran past JOB_TIMEOUT and was stopped."""


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


def _tail(tail: _Tail) -> str:
    text = bytes(tail.data).decode("utf-8", errors="replace")
    return "[… output truncated …]\n" + text if tail.cut else text


def command_environment(
    base: Mapping[str, str],
    context: PushContext,
    *,
    event_path: str,
    home: str,
    result_path: str,
    passed: Iterable[str] = (),
) -> dict[str, str]:
    """The command's whole environment: an allow-list, never the worker's environment.

    ``PATH``, ``LANG``, ``LC_ALL`` and the names in ``passed`` (PROCESS_ENV) come from ``base``;
    ``HOME`` is the job's own; the ``GHAPP_*`` variables say what is being processed."""
    env = {k: base[k] for k in (*PASSED_ENV, *passed) if k in base and not is_secret(k)}
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(
        HOME=home,
        GHAPP_REPOSITORY=context.repository,
        GHAPP_REF=context.ref,
        GHAPP_SHA=context.sha,
        GHAPP_DELIVERY=context.delivery,
        GHAPP_EVENT=context.event,
        GHAPP_EVENT_PATH=event_path,
        GHAPP_RESULT_PATH=result_path,
    )
    return env


def run_command(
    command: str,
    context: PushContext,
    *,
    job_dir: JobDirectory,
    timeout: float | None,
    sandbox: Sandbox | None = None,
    passed_env: Iterable[str] = (),
    limits: Limits | None = None,
) -> dict[str, Any]:
    """Run ``command`` in the checkout (in ``sandbox`` unless None); return its exit status
    and output, or raise on failure. With ``limits``, a command that grows the checkout past
    them is stopped."""
    event_path = job_dir.event_file
    event_path.write_text(json.dumps(context.payload))
    event_path.chmod(0o600)
    result_path = job_dir.result_file
    result_path.unlink(missing_ok=True)  # a run before a retry left one: not this run's
    result_path.touch(mode=0o600)
    if sandbox is not None:
        argv = sandbox.argv(
            ["sh", "-c", command, COMMAND_MARK],
            checkout=context.path,
            event_file=event_path,
            result_file=result_path,
        )
        env = command_environment(
            os.environ,
            context,
            event_path=EVENT_FILE,
            home=SANDBOX_HOME,
            result_path=RESULT_FILE,
            passed=passed_env,
        )
        cwd = None
    else:
        home = job_dir.home
        home.mkdir(mode=0o700, exist_ok=True)
        argv = ["sh", "-c", GUARD, COMMAND_MARK, command]
        env = command_environment(
            os.environ,
            context,
            event_path=str(event_path),
            home=str(home),
            result_path=str(result_path),
            passed=passed_env,
        )
        cwd = context.path
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so a timeout stops all of it
        preexec_fn=signal_on_parent_death(signal.SIGTERM),
    )
    # If this job's process is killed, a later job removes what is left of its group.
    job_dir.command_group.write_text(str(process.pid))
    try:
        with _watched(context.path, CommandLimits(limits, result_path), process) as over:
            output, finished = read_tail(process, timeout)
        if over:
            reason = f"PROCESS_COMMAND was stopped: {over[0]}"
            raise ProcessingError(
                f"{reason}; last output:\n{_tail(output)}", reason=reason, output=_tail(output)
            )
        if not finished:
            _kill_group(process)
            process.wait()
            reason = "PROCESS_COMMAND ran past JOB_TIMEOUT and was stopped"
            raise ProcessingTimedOut(
                f"{reason}; last output:\n{_tail(output)}", reason=reason, output=_tail(output)
            )
    finally:
        # Also reached when the job itself is being stopped (RQ's timeout, a shutdown).
        _kill_group(process)
        if process.stdout is not None:
            process.stdout.close()
    result: dict[str, Any] = {"exit_status": process.returncode, "output": _tail(output)}
    log.info("PROCESS_COMMAND exited %s; output:\n%s", process.returncode, result["output"])
    if process.returncode < 0 or process.returncode in KILLED_STATUSES:
        raise ProcessingInterrupted(
            f"PROCESS_COMMAND was killed from outside (status {process.returncode})"
        )
    report = read_result_file(result_path)
    if process.returncode != 0:
        raise ProcessingError(
            f"PROCESS_COMMAND exited with status {process.returncode}; last output:\n"
            f"{result['output']}",
            reason=f"PROCESS_COMMAND exited with status {process.returncode}",
            output=result["output"],
            exit_status=process.returncode,
            report=report,
        )
    result["report"] = report
    return result


@dataclass(frozen=True)
class CommandLimits:
    """What the command may not grow while it runs: the checkout (``checkout``'s limits, if
    any) and its result file (GHAPP_RESULT_PATH, read up to MAX_FILE_BYTES: more is waste of
    the worker's disk)."""

    checkout: Limits | None
    result_file: Path

    def exceeded(self, path: Path) -> str | None:
        try:
            written = os.lstat(self.result_file).st_size
        except OSError:
            written = 0
        if written > MAX_FILE_BYTES:
            return (
                f"its result file (GHAPP_RESULT_PATH) grew past {MAX_FILE_BYTES // (1024 * 1024)}"
                " MiB, more than ghapp reads"
            )
        reason = self.checkout.exceeded(path) if self.checkout else None
        return f"the checkout {reason}" if reason else None


@contextmanager
def _watched(
    path: Path, limits: CommandLimits, process: subprocess.Popen[bytes]
) -> Iterator[list[str]]:
    """While the block runs, stop ``process`` if it grows ``path`` or its result file past
    ``limits``; the list yielded then says how."""
    with enforced(limits, path, lambda: _kill_group(process), every=WATCH_SECONDS) as over:
        yield over


class _Tail:
    """The last OUTPUT_LIMIT bytes of a stream, and whether more came before them."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.cut = False

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > OUTPUT_LIMIT:
            del self.data[: len(self.data) - OUTPUT_LIMIT]
            self.cut = True


def read_tail(process: subprocess.Popen[bytes], timeout: float | None) -> tuple[_Tail, bool]:
    """Read ``process``'s output in chunks, keeping only its tail (memory stays flat whatever
    it prints), until it exits; False as second item if ``timeout`` ran out first.

    A process that exited while something it started still holds the pipe (a background child,
    unsandboxed) has its output read for EXITED_GRACE seconds more, not until that child ends."""
    assert process.stdout is not None
    deadline = None if timeout is None else time.monotonic() + timeout
    exited_at: float | None = None
    tail = _Tail()
    fd = process.stdout.fileno()
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            now = time.monotonic()
            left = None if deadline is None else deadline - now
            if left is not None and left <= 0:
                return tail, False
            if exited_at is None and process.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at >= EXITED_GRACE:
                break
            if not selector.select(POLL_SECONDS if left is None else min(left, POLL_SECONDS)):
                continue
            chunk = os.read(fd, READ_CHUNK)
            if not chunk:
                break  # every writer closed the pipe
            tail.add(chunk)
    try:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        process.wait(left)
    except subprocess.TimeoutExpired:
        return tail, False
    return tail, True


@contextmanager
def captured_output() -> Iterator[_Tail]:
    """While the block runs, what this process writes to its standard output and error (a
    PROCESSOR's prints, the programs it runs) goes into the tail yielded, not to the log.

    Redirected at the file-descriptor level, into a pipe a thread reads: memory stays flat
    whatever is written; the descriptors are restored afterwards."""
    tail = _Tail()
    read_end, write_end = os.pipe()
    streams = (sys.stdout, sys.stderr)
    for stream in streams:
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    reader = threading.Thread(target=_drain, args=(read_end, tail), daemon=True)
    reader.start()
    # Python's own streams write to the descriptors while the block runs, whatever they were.
    replacements = [open(fd, "w", buffering=1, closefd=False, errors="replace") for fd in (1, 2)]  # noqa: SIM115
    try:
        os.dup2(write_end, 1)
        os.dup2(write_end, 2)
        os.close(write_end)
        sys.stdout, sys.stderr = replacements
        yield tail
    finally:
        for stream in replacements:
            with contextlib.suppress(Exception):
                stream.close()
        sys.stdout, sys.stderr = streams
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        # The pipe ends once nothing holds its writing end: a background child the step left
        # behind may, so the tail is read for EXITED_GRACE seconds at most.
        reader.join(EXITED_GRACE)
        with contextlib.suppress(OSError):
            os.close(read_end)


def _drain(fd: int, tail: _Tail) -> None:
    with contextlib.suppress(OSError):
        while chunk := os.read(fd, READ_CHUNK):
            tail.add(chunk)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


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
    job_dir: JobDirectory,
    timeout: float | None,
    sandbox: Sandbox | None = None,
    passed_env: Iterable[str] = (),
    limits: Limits | None = None,
) -> tuple[dict[str, Any], StepReport]:
    """Run what is configured in the checkout; the job's result, and what the step reported of
    itself (a PROCESSOR's returned dict, the command's GHAPP_RESULT_PATH; the command's wins)."""
    result: dict[str, Any] = {"summary": summarize(context.path, context.sha)}
    report = StepReport()
    if processor:
        function = load_processor(processor)
        caught: Exception | None = None
        with captured_output() as output:
            try:
                value = function(context)
            except Exception as exc:
                caught = exc
        if isinstance(caught, ProcessingError):
            caught.output = caught.output or _tail(output)
            raise caught
        if isinstance(caught, Transient):
            raise caught
        if caught is not None:
            reason = f"PROCESSOR {processor} raised {type(caught).__name__}: {caught}"
            raise ProcessingError(
                f"{reason}; last output:\n{_tail(output)}" if output.data else reason,
                reason=reason.splitlines()[0],
                output=_tail(output),
            ) from caught
        result["processor"] = value if _is_json(value) else repr(value)
        result["processor_output"] = _tail(output)
        if isinstance(value, dict):
            report = from_mapping(value, "PROCESSOR's result")
    if command:
        ran = run_command(
            command,
            context,
            job_dir=job_dir,
            timeout=timeout,
            sandbox=sandbox,
            passed_env=passed_env,
            limits=limits,
        )
        command_report = ran.pop("report")
        result["command"] = ran
        if command_report != StepReport():
            report = command_report
    return result, report


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
