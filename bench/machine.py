"""What the figures were measured on: the machine and the versions of everything measured."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version

import gunicorn
import rq

from ghapp.embedded_redis import redis_server_binary


@dataclass
class Machine:
    measured: datetime
    cores: int
    architecture: str
    system: str  # name and release
    versions: str  # of Python, Flask, gunicorn, RQ, redis-server, git and wrk


def describe() -> Machine:
    return Machine(
        measured=datetime.now(UTC),
        cores=os.cpu_count() or 1,
        architecture=platform.machine(),
        system=f"{platform.system()} {platform.release()}",
        versions=versions(),
    )


def versions() -> str:
    git = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    wrk_version = (
        (wrk.stdout or wrk.stderr).splitlines()[0] if (wrk.stdout or wrk.stderr) else "wrk"
    )
    server = subprocess.run(
        [redis_server_binary(), "--version"], capture_output=True, text=True
    ).stdout.split()
    server_version = next((w for w in server if w.startswith("v=")), "v=?")[2:]
    return (
        f"Python {platform.python_version()}, Flask {version('flask')}, gunicorn "
        f"{gunicorn.__version__}, RQ {rq.__version__}, redis-server {server_version} (embedded), "
        f"{git}, {wrk_version.split(' [')[0]}"
    )
