"""The web process is not a way in: no control socket for local processes to stop it through."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ghapp.local import process_children
from ghapp.simulator import GitHubSimulator
from tests.e2e.conftest import Stack, start_stack
from webapp.deliveries import signature_for

ANSWER_WITHIN = 10.0  # GitHub's limit for an answer
PING = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()


@pytest.fixture(scope="module")
def web(
    redis_url: str,
    app_key: tuple[bytes, bytes],
    simulator: GitHubSimulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """The web process alone (pings need no worker), with a HOME of its own and no
    XDG_RUNTIME_DIR: where gunicorn would open its control socket is known."""
    home = tmp_path_factory.mktemp("slow-clients")
    (home / "home").mkdir()
    stack = start_stack(
        redis_url=redis_url,
        app_key=app_key,
        simulator=simulator,
        home=home,
        overrides={"HOME": str(home / "home"), "XDG_RUNTIME_DIR": ""},
        workers=0,
    )
    yield stack
    stack.stop()


def ping(stack: Stack) -> tuple[int, float]:
    """Post a correctly signed ping as GitHub does: its status and how long the answer took."""
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": signature_for(PING, b"test-secret"),
        "User-Agent": "GitHub-Hookshot/test",
    }
    started = time.monotonic()
    try:
        answer = requests.post(stack.webhook, data=PING, headers=headers, timeout=ANSWER_WITHIN)
    except requests.Timeout:
        return 0, time.monotonic() - started
    return answer.status_code, time.monotonic() - started


def test_the_web_process_has_no_control_socket(web: Stack):
    home = Path(web.env["HOME"])
    default = home / ".gunicorn" / "gunicorn.ctl"  # gunicorn's default without XDG_RUNTIME_DIR
    assert ping(web)[0] == 200  # up and serving
    assert not default.exists()
    assert not (home / ".gunicorn").exists()
    with socket.socket(socket.AF_UNIX) as client, pytest.raises(FileNotFoundError):
        client.connect(str(default))
    # Nor anywhere else: no process of the web process (master or worker) listens on a Unix
    # socket. (/proc/<pid>/fd of the non-dumpable master is readable by root only.)
    pids = [web.web.pid, *process_children().get(web.web.pid, [])]
    assert len(pids) >= 3, "the master and its two workers"
    try:
        inodes = {inode for pid in pids for inode in socket_inodes(pid)}
    except PermissionError:
        pytest.skip("the web process's descriptors are readable by root only")
    assert inodes, "the workers' own sockets were found"
    assert not inodes & listening_unix_sockets()


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def listening_unix_sockets() -> set[str]:
    """Inodes of the Unix sockets that accept connections (flag __SO_ACCEPTCON)."""
    inodes = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[3], 16) & 0x10000:
            inodes.add(fields[6])
    return inodes
