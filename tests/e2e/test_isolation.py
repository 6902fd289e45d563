"""A hostile repository takes nothing: the attack of ``attack.py`` run for real, by ``ghapp serve``
(embedded Redis, web, two workers) started as an ordinary user — as root it would prove nothing.

With the sandbox the command sees its checkout and nothing else. Without it (SANDBOX=none) it
sees the machine as the worker's user does, and still reads none of ghapp's secrets: ghapp's
processes are not dumpable, Redis wants a password, git gets its token through a pipe, and git
reads no configuration the command could write.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ghapp.local import free_port
from ghapp.simulator import GitHubSimulator
from tests.conftest import INSTALLATION_ID
from tests.support import Process, command_lines, healthy, signed_post, wait_for
from tests.unprivileged import Unavailable, User, ordinary_user

ATTACK = (Path(__file__).parent / "attack.py").read_text()
# The repository decides the attack's arguments (what an attacker controls anyway).
COMMAND = 'eval "python3 attack.py $(cat attack-args 2>/dev/null)"'
REPORT = "ATTACK-REPORT "
HARMLESS = "print('an ordinary repository')\n"
SECRET = "hook-" + secrets.token_hex(16)
DOTENV_SECRET = "dotenv-" + secrets.token_hex(16)
# What the command's environment may hold, whatever the worker's holds.
ALLOWED_ENV = {
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "PWD",
    "SHLVL",
    "_",
    "LC_CTYPE",
}  # LC_CTYPE: set by
# Python itself in a C locale (PEP 538)
# How ghapp's own processes show in /proc (the sandboxed command's shell is "ghapp-command").
GHAPP_PROCESS_SIGNS = ("-m ghapp", "gunicorn", "rq:", "rq ", "redis-server", "uvicorn")


@pytest.fixture(scope="module")
def ordinary() -> Iterator[User]:
    scratch = Path(tempfile.mkdtemp(prefix="ghapp-ordinary-user-"))
    try:
        yield ordinary_user(scratch)
    except Unavailable as exc:
        pytest.skip(f"isolation cannot be tested here: {exc}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@dataclass
class Served:
    """``ghapp serve`` running as the ordinary user."""

    url: str
    home: Path
    process: Process
    simulator: GitHubSimulator
    private_key: bytes

    def push(self, name: str, files: dict[str, str]) -> str:
        repo = self.simulator.create_repository(name, installation_id=INSTALLATION_ID, files=files)
        payload = self.simulator.push_payload(
            repo.full_name, before=None, after=self.simulator.branch_tip(repo.full_name)
        )
        delivery = str(uuid.uuid4())
        answer = signed_post(
            self.url + "/webhook", payload, secret=SECRET.encode(), delivery=delivery
        )
        assert answer.status_code == 202, answer.text
        return delivery

    def log(self) -> str:
        return self.process.output()

    def report(self, delivery: str, timeout: float = 60) -> dict[str, Any]:
        """The attack's report from the job of ``delivery``, once its worker logged it."""

        def find() -> dict[str, Any] | None:
            for line in self.log().splitlines():
                if line.startswith(REPORT):
                    found = json.loads(line[len(REPORT) :])
                    if found["environment"].get("GHAPP_DELIVERY") == delivery:
                        return found
            return None

        return wait_for(find, timeout, f"the attack's report of delivery {delivery}")

    def secrets(self) -> list[str]:
        """Every secret the processes hold, in a form that would show in a leak."""
        pem_lines = [line for line in self.private_key.decode().splitlines() if "---" not in line]
        tokens = [mint.token for mint in self.simulator.issued_tokens]
        return [SECRET, DOTENV_SECRET, *pem_lines[:3], *tokens]


def serve_as(
    user: User, simulator: GitHubSimulator, key: bytes, home: Path, sandbox: str
) -> Served:
    user.own(home)
    user.own(home / "tmp")
    (home / ".env").write_text(f"TOKEN_CACHE_KEY={DOTENV_SECRET}\n")
    os.chown(home / ".env", user.uid, user.uid)
    (home / ".env").chmod(0o600)
    port = free_port()
    env = {
        "PATH": os.pathsep.join(
            [str(Path(user.python).parent), "/usr/local/bin", "/usr/bin", "/bin"]
        ),
        "PYTHONPATH": user.pythonpath,
        "HOME": str(home),
        "TMPDIR": str(home / "tmp"),
        "GITHUB_APP_ID": simulator.app_id,
        "GITHUB_PRIVATE_KEY": key.decode(),
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "GITHUB_API_URL": simulator.api_url,
        "GITHUB_URL": simulator.url,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKERS": "2",
        "WEB_CONCURRENCY": "1",
        "JOB_TIMEOUT": "60",
        "REDELIVERY_INTERVAL": "0",
        "PROCESS_COMMAND": COMMAND,
        "SANDBOX": sandbox,
    }
    logs = user.own(home / "logs")
    process = Process(
        "serve",
        user.argv(user.python, "-m", "ghapp", "serve", "--data-dir", str(home / "data")),
        env,
        home,
        logs,
    )
    url = f"http://127.0.0.1:{port}"

    try:
        wait_for(lambda: healthy(url), 60, "ghapp serve to answer as the ordinary user")
    except AssertionError:
        process.stop()
        raise AssertionError(process.output()[-3000:]) from None
    return Served(url, home, process, simulator, key)


@pytest.fixture
def served(
    request: pytest.FixtureRequest,
    ordinary: User,
    simulator: GitHubSimulator,
    app_key: tuple[bytes, bytes],
) -> Iterator[Served]:
    scratch = Path(tempfile.mkdtemp(prefix="ghapp-isolation-"))  # pytest's is root's alone
    scratch.chmod(0o755)
    running = serve_as(ordinary, simulator, app_key[0], scratch / "home", request.param)
    try:
        yield running
    finally:
        running.process.stop()
        shutil.rmtree(scratch, ignore_errors=True)
        for pid, line in command_lines().items():  # what SANDBOX=none let the attack leave
            if b"-leftover" in line and b"sleep 300" in line:
                os.kill(pid, signal.SIGKILL)


def ghapp_pids(report: dict[str, Any]) -> set[str]:
    return {
        pid
        for pid, line in report["processes"].items()
        if any(sign in line for sign in GHAPP_PROCESS_SIGNS)
    }


def assert_no_secret_anywhere(
    served: Served, report: dict[str, Any], *, files_reachable: bool = False
) -> None:
    """No secret in the attack's report, nor in any log. ``files_reachable``: unsandboxed, the
    command reads the worker user's files (its .env among them), as the warning says."""
    text = json.dumps(report)
    log = served.log()
    for value in served.secrets():
        if files_reachable and value == DOTENV_SECRET:
            continue
        assert value not in text, "the attack found a secret"
        assert value not in log, "a secret reached the log"


@pytest.mark.parametrize("served", ["auto"], indirect=True)
def test_in_the_sandbox_a_hostile_repository_reaches_nothing(served: Served) -> None:
    delivery = served.push(f"mallory/sandboxed-{uuid.uuid4().hex[:6]}", {"attack.py": ATTACK})
    report = served.report(delivery)

    # Its own PID namespace: no ghapp process, no other job, nothing to read.
    assert report["processes"], "the attack saw not even its own shell: it did not run"
    visible = " ".join(report["processes"].values())
    assert not ghapp_pids(report), visible
    assert "git" not in visible, visible
    assert report["loot"] == []
    # No Redis, no other job's checkout, no .env, no key file, no data directory.
    assert all(answer.startswith("refused") for answer in report["sockets"].values())
    assert not [path for path in report["files_read"] if path.endswith((".env", ".aof"))]
    assert not any("ghapp-job-" in name for name in report["listing"].get("/tmp", []))
    assert report["listing"]["/"]
    assert "home" not in report["listing"]["/"]
    assert not report["files_read"]["/etc/shadow"]
    # Only what is named passes into its environment.
    environment = report["environment"]
    assert {n for n in environment if not n.startswith("GHAPP_")} <= ALLOWED_ENV
    assert environment["HOME"] == "/tmp/home"
    assert_no_secret_anywhere(served, report)

    # Its job directory is gone, with what it made unreadable.
    wait_for(lambda: not list((served.home / "tmp").glob("ghapp-job-*")), 10, "the job's directory")
    # What it started in a new session died with it.
    wait_for(
        lambda: (
            not [
                line for line in command_lines().values() if f"{delivery}-leftover".encode() in line
            ]
        ),
        10,
        "the attack's setsid process to be gone",
    )


@pytest.mark.parametrize("served", ["none"], indirect=True)
def test_unsandboxed_the_command_still_reads_no_secret_and_leaves_git_nothing(
    served: Served,
) -> None:
    # The attacker writes the worker's git configuration: a proxy that would see the next job's
    # credential, and a template whose hook would run inside ghapp's git.
    proxy = socket.socket()
    proxy.bind(("127.0.0.1", 0))
    proxy.listen()
    proxy.settimeout(0.2)
    hooked = served.home / "tmp" / "hook-ran"
    template = served.home / "evil-template"
    gitconfig = (
        f"[http]\\n\\tproxy = http://127.0.0.1:{proxy.getsockname()[1]}\\n"
        f"[init]\\n\\ttemplateDir = {template}\\n"
        f"[core]\\n\\thooksPath = {template}/hooks\\n"
    )
    hook = f"#!/bin/sh\\ntouch {hooked}\\n"
    args = [
        "6",  # seconds watching other processes: a concurrent job's git among them
        f"{served.home}/.gitconfig={gitconfig}",
        f"{served.home}/.config/git/config={gitconfig}",
        f"{template}/hooks/post-checkout={hook}",
    ]
    attacker = served.push(
        f"mallory/unsandboxed-{uuid.uuid4().hex[:6]}",
        {"attack.py": ATTACK, "attack-args": shlex.join(args)},
    )
    # Another installation's push, fetched while the attack watches.
    wait_for(lambda: attacker in served.log(), 30, "the attack to start")
    served.push(f"victim-org/concurrent-{uuid.uuid4().hex[:6]}", {"attack.py": HARMLESS})
    report = served.report(attacker)

    # The attack works: it sees ghapp's processes, the Redis socket, the files it wrote...
    ours = ghapp_pids(report)
    assert ours, "the attack saw no ghapp process: it proves nothing"
    assert report["written"], "the attack could not write the worker's git configuration"
    # ...and reads none of their environments or memories, nor Redis without its password.
    dumpable = {report["processes"][pid] for pid in ours & set(report["environ_read"])}
    assert not dumpable, f"ghapp processes are dumpable: {dumpable}"
    assert not ours & set(report["mem_read"]), "a ghapp process's memory is readable"
    redis_answers = [a for p, a in report["sockets"].items() if p.endswith("redis.sock")]
    assert redis_answers
    assert all(not a.startswith("+PONG") for a in redis_answers)
    assert [entry for entry in report["loot"] if "/environ" in entry[0]] == []
    assert_no_secret_anywhere(served, report, files_reachable=True)
    assert "SANDBOX=none: PROCESS_COMMAND runs unsandboxed" in served.log()

    # The next job's git read nothing of what the attack wrote.
    follower = f"victim-org/after-{uuid.uuid4().hex[:6]}"
    served.push(follower, {"attack.py": HARMLESS})
    wait_for(lambda: f"processed {follower}" in served.log(), 60, "the next push")
    with pytest.raises(TimeoutError):
        proxy.accept()  # nobody came through the attacker's proxy
    proxy.close()
    assert not hooked.exists(), "the attacker's hook ran inside ghapp's git"
