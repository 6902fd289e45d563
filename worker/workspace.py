"""A private directory per job (its checkout, event file, the command's HOME and process group),
and the removal of abandoned ones.

Directory names carry the job process's pid, so a worker can tell, at start and before each job,
which leftovers belong to processes that no longer exist (a killed worker cannot clean up after
itself); what still runs of such a job's processing command is stopped first.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("ghapp.worker.workspace")
PREFIX = "ghapp-job-"
REMOVE_SECONDS = 120
COMMAND_GROUP_FILE = "command.pgid"
# $0 of the shell every processing command runs under, to recognise it in /proc.
COMMAND_MARK = "ghapp-command"


@dataclass(frozen=True)
class JobDirectory:
    """What a job keeps in its private directory."""

    root: Path

    @property
    def checkout(self) -> Path:
        return self.root / "checkout"

    @property
    def event_file(self) -> Path:
        """The payload, for the processing command."""
        return self.root / "event.json"

    @property
    def result_file(self) -> Path:
        """What the processing command may write of its own result (GHAPP_RESULT_PATH)."""
        return self.root / "result.json"

    @property
    def home(self) -> Path:
        """HOME of an unsandboxed command."""
        return self.root / "home"

    @property
    def command_group(self) -> Path:
        """The process group of the running command, for a later job to stop if this one dies."""
        return self.root / COMMAND_GROUP_FILE


@contextmanager
def workspace(root: str | None = None) -> Iterator[JobDirectory]:
    """A fresh 0700 directory, removed on exit whatever happens."""
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=root))
    try:
        yield JobDirectory(path)
    finally:
        remove_tree(path)


def remove_tree(path: Path) -> bool:
    """Remove ``path`` and everything in it, even what the command made unreadable or
    unwritable (``chmod 000``) or nested deeper than Python's recursion or a path's length
    reach; True if it is gone."""
    try:
        shutil.rmtree(path, ignore_errors=True)
    except RecursionError:
        pass  # a tree nested thousands deep: coreutils below walk it without limit
    if not os.path.lexists(path):
        return True
    # coreutils walk any depth and follow no link met on the way (chmod -R changes no link's
    # target but the top one's, which is this directory itself).
    for argv in (["chmod", "-R", "u+rwx", "--", str(path)], ["rm", "-rf", "--", str(path)]):
        try:
            subprocess.run(argv, capture_output=True, timeout=REMOVE_SECONDS, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("%s on %s failed: %s", argv[0], path, exc)
    if os.path.lexists(path):
        log.warning("could not remove %s entirely", path)
        return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_command(directory: Path) -> None:
    """Kill what is left of a dead job's processing command (its own process group).

    A group keeps its id while any member lives; the id can only have gone to a new group if a
    process with that pid exists and leads it, so such a process must be our guard shell."""
    try:
        pgid = int(JobDirectory(directory).command_group.read_text())
    except (OSError, ValueError):
        return
    try:
        leader = Path(f"/proc/{pgid}/cmdline").read_bytes()
    except OSError:
        leader = None  # the guard is gone; its group, if any member lives, is still ours
    if leader is not None and COMMAND_MARK.encode() not in leader:
        return  # the id now belongs to someone else
    with suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)


def remove_abandoned(root: str | None = None) -> list[Path]:
    """Remove job directories whose process is gone; return what was removed."""
    base = Path(root or tempfile.gettempdir())
    removed = []
    for entry in base.glob(f"{PREFIX}*"):
        pid_text = entry.name[len(PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit() or _alive(int(pid_text)) or not entry.is_dir():
            continue
        try:
            _stop_command(entry)
            if remove_tree(entry):
                removed.append(entry)
        except Exception:  # one job's leftovers must never stop the next job
            log.exception("could not remove %s", entry)
    if removed:
        log.info("removed %d job directories left by stopped workers", len(removed))
    return removed
