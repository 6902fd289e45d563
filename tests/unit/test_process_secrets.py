"""A process's secrets: which variables are secrets, taken out of the environment children
inherit, handed to ghapp's own children over a pipe."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ghapp.core import process_secrets
from ghapp.core.process_secrets import HANDOFF_VARIABLE, handoff, is_secret, withhold
from tests.support import ROOT
from tests.unprivileged import UID


@pytest.fixture(autouse=True)
def own_withheld(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process_secrets, "_withheld", {})


@pytest.mark.parametrize(
    "name",
    [
        "GITHUB_PRIVATE_KEY",
        "GITHUB_WEBHOOK_SECRET",
        "TOKEN_CACHE_KEY",
        "REDIS_URL",
        "REDIS_TLS_URL",
        "HEROKU_REDIS_MAROON_URL",
        "redis_url",
    ],
)
def test_ghapps_secrets_and_every_redis_url_are_secrets(name: str) -> None:
    assert is_secret(name)


@pytest.mark.parametrize("name", ["GITHUB_APP_ID", "PATH", "HOME", "GITHUB_PRIVATE_KEY_PATH"])
def test_what_is_not_a_secret(name: str) -> None:
    assert not is_secret(name)


def test_withheld_secrets_leave_the_environment_but_stay_readable() -> None:
    environ = {"PATH": "/bin", "GITHUB_WEBHOOK_SECRET": "hook", "REDIS_URL": "redis://:pw@r"}
    kept = withhold(environ)
    assert environ == {"PATH": "/bin"}
    assert kept == {"GITHUB_WEBHOOK_SECRET": "hook", "REDIS_URL": "redis://:pw@r"}
    assert process_secrets.withheld() == kept


def test_a_child_gets_its_secrets_over_the_pipe_and_none_in_its_environment() -> None:
    parent_env = {"PATH": "/bin", "GITHUB_PRIVATE_KEY": "pem", "WORKERS": "2"}
    child_env, fd = handoff(parent_env, {"REDIS_URL": "unix://:pw@/s"})
    assert child_env == {"PATH": "/bin", "WORKERS": "2", HANDOFF_VARIABLE: str(fd)}
    assert "pem" not in child_env.values()
    # What the child does first thing (protect_process): read the pipe, once.
    received = withhold(child_env)
    assert received == {"GITHUB_PRIVATE_KEY": "pem", "REDIS_URL": "unix://:pw@/s"}
    assert HANDOFF_VARIABLE not in child_env
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)  # read and closed


# Run in a child process: imports first, then (as root) becomes an ordinary user, which itself
# makes a process undumpable, so it turns dumpable again before the check.
UNDUMPABLE_CHILD = """
import ctypes, os, sys
from ghapp.core import process_secrets
uid = int(sys.argv[1])
if os.geteuid() == 0:
    os.setgid(uid)
    os.setuid(uid)
    ctypes.CDLL(None).prctl(process_secrets.PR_SET_DUMPABLE, 1, 0, 0, 0)
before = os.stat("/proc/self/environ").st_uid
process_secrets.make_undumpable()
after = os.stat("/proc/self/environ").st_uid
print(before, after, os.getuid())
"""


def test_a_process_can_make_itself_undumpable() -> None:
    """As an ordinary user (as root, /proc is root's anyway): its /proc files belong to itself,
    then, once undumpable, to root (proc(5))."""
    done = subprocess.run(
        [sys.executable, "-c", UNDUMPABLE_CHILD, str(UID)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    before, after, uid = (int(n) for n in done.stdout.split())
    assert uid != 0
    assert before == uid
    assert after == 0
