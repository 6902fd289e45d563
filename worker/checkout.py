"""Fetch exactly one commit into a private directory, within limits of size, files and time.

Every git runs hermetically: no global or system configuration, a private empty ``HOME``, no
hooks or templates, only the origin's protocol, an environment of its own (nothing inherited).
The token reaches git through an inherited pipe that a credential helper scoped to GitHub's
origin reads once: never in an environment, a URL, a command line, a file or ``.git/config``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import git

from .failures import Permanent, Transient

DEFAULT_PORTS = {"http": 80, "https": 443}
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
HTTP_STATUS_RE = re.compile(r"returned error: (\d{3})|HTTP (\d{3})")
SIZE_CHECK_SECONDS = 0.2
# What git prints when the server answers 401 (it then wants a username it may not ask for).
AUTH_REFUSED = ("could not read Username", "terminal prompts disabled", "Authentication failed")
# What git prints when the repository or the commit is not there: trying again will not help.
NOT_FOUND = ("not our ref", "unadvertised object", "Repository not found", "does not appear to be")


class CheckoutRefused(Permanent):
    """The commit cannot be checked out as asked (wrong origin, too large, not found...)."""


class CheckoutTimedOut(CheckoutRefused):
    """git took longer than it was given."""


class CheckoutFailed(Transient):
    """git or the network failed in a way worth trying again; ``status`` is git's HTTP status."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL, with the scheme's default port filled in."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise CheckoutRefused(f"{url!r} is not an http(s) URL")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise CheckoutRefused(f"{url!r} has an invalid port") from None
    return scheme, parts.hostname.lower(), port


def check_clone_url(clone_url: str, github_url: str) -> None:
    """Refuse a clone URL that is not on GitHub's origin: the token goes nowhere else."""
    parts = urlsplit(clone_url)
    if parts.username or parts.password or parts.query or parts.fragment:
        raise CheckoutRefused("repository.clone_url carries credentials, a query or a fragment")
    if origin(clone_url) != origin(github_url):
        raise CheckoutRefused(
            f"repository.clone_url {clone_url!r} is not on GITHUB_URL {github_url!r}: "
            "refusing to send the token there (set GITHUB_URL for GitHub Enterprise)"
        )


def credential_helper(fd: int) -> str:
    """A credential helper that answers ``get`` with what the pipe ``fd`` holds, once.
    (Through /dev/fd: a POSIX shell's ``<&N`` takes one digit only.)"""
    return f'!f() {{ test "$1" = get && cat /dev/fd/{fd}; }}; f'


def git_environment(
    github_url: str, base: Mapping[str, str], *, home: str, credential_fd: int | None = None
) -> dict[str, str]:
    """The whole environment of a hermetic git process: nothing from ``base`` but ``PATH``.

    With ``credential_fd``, git asks a helper scoped to ``github_url``'s origin for the
    credential, which reads it from that inherited pipe; the environment holds no secret."""
    scheme, host, port = origin(github_url)
    netloc = host if port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
    config = {
        "core.hooksPath": "/dev/null",
        "core.fsmonitor": "false",
        "init.templateDir": "",
        "protocol.allow": "never",
        f"protocol.{scheme}.allow": "always",
        "protocol.version": "2",
        "http.followRedirects": "false",
        "credential.helper": "",  # forgets any helper configured elsewhere
        "core.askPass": "",
        "maintenance.auto": "false",
        "gc.auto": "0",
    }
    if credential_fd is not None:
        config[f"credential.{scheme}://{netloc}.helper"] = credential_helper(credential_fd)
    env = {
        "PATH": base.get("PATH") or DEFAULT_PATH,
        "HOME": home,
        "XDG_CONFIG_HOME": home,
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",  # git's messages in English: classify_git_failure reads them
        "GIT_CONFIG_COUNT": str(len(config)),
    }
    for index, (key, value) in enumerate(config.items()):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def directory_usage(path: Path) -> tuple[int, int]:
    """(bytes, files) under ``path``; directories and links count as files."""
    total = 0
    files = 0
    for root, dirs, names in os.walk(path):
        files += len(names) + len(dirs)
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass  # a temporary file git just renamed
    return total, files


@dataclass(frozen=True)
class Limits:
    """How far a checkout may go: CHECKOUT_MAX_MB, CHECKOUT_MAX_FILES, CHECKOUT_TIMEOUT."""

    max_bytes: int
    max_files: int
    timeout: float

    def exceeded(self, path: Path) -> str | None:
        size, files = directory_usage(path)
        if size > self.max_bytes:
            return (
                f"grew past {self.max_bytes // (1024 * 1024)} MiB: raise CHECKOUT_MAX_MB if the "
                "repository is that large"
            )
        if files > self.max_files:
            return (
                f"grew past {self.max_files} files: raise CHECKOUT_MAX_FILES if the repository "
                "has that many"
            )
        return None


class Measured(Protocol):
    """What ``enforced`` watches: ``exceeded(path)`` says how ``path`` went too far, or None."""

    def exceeded(self, path: Path) -> str | None: ...


@contextmanager
def enforced(
    limits: Measured, path: Path, stop: Callable[[], None], every: float = SIZE_CHECK_SECONDS
) -> Iterator[list[str]]:
    """While the block runs, measure ``path`` every ``every`` seconds and call ``stop`` once it
    grows past ``limits``; the list yielded then says how."""
    over: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(every):
            reason = limits.exceeded(path)
            if reason:
                over.append(reason)
                stop()
                return

    watcher = threading.Thread(target=watch, daemon=True, name="checkout-limits")
    watcher.start()
    try:
        yield over
    finally:
        done.set()
        watcher.join()


def run_limited(
    process: subprocess.Popen[bytes], path: Path, limits: Limits, *, timeout: float, what: str
) -> bytes:
    """Wait for ``process``; kill it if ``path`` grows past ``limits`` or time runs out.
    Returns its stderr."""
    with enforced(limits, path, lambda: _kill_group(process)) as over:
        try:
            _, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.communicate()
            raise CheckoutTimedOut(
                f"{what} took longer than {timeout:.0f} s: raise CHECKOUT_TIMEOUT if the "
                "repository is that large"
            ) from None
    reason = over[0] if over else limits.exceeded(path)  # also what grew between checks
    if reason:
        raise CheckoutRefused(f"{what} {reason}")
    return stderr or b""


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill git and what it started (git-remote-https holds the pipes we read); a process that
    leads no group of its own, alone."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            process.kill()


def classify_git_failure(stderr: str, returncode: int) -> Exception:
    """A failed fetch as Permanent or Transient, with git's last line (never a credential)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    detail = lines[-1][:300] if lines else f"exit status {returncode}"
    match = HTTP_STATUS_RE.search(stderr)
    status = int(match.group(1) or match.group(2)) if match else 0
    if not status and any(sign in stderr for sign in AUTH_REFUSED):
        status = 401  # git asked for credentials: the server refused the one it was given
    if status in (401, 403):
        return CheckoutFailed(f"git fetch refused the installation token ({detail})", status)
    if status == 404 or any(sign in stderr for sign in NOT_FOUND):
        return CheckoutRefused(f"git fetch: repository or commit not found ({detail})")
    return CheckoutFailed(f"git fetch failed ({detail})", status)


def git_executable() -> str:
    return git.Git.GIT_PYTHON_GIT_EXECUTABLE or "git"


def fetch_commit(
    path: Path,
    clone_url: str,
    sha: str,
    *,
    token: str,
    github_url: str,
    limits: Limits,
) -> None:
    """Fetch ``sha`` alone (depth 1) from ``clone_url`` into ``path``; check it out detached.

    ``path`` must not exist; its parent holds git's private ``HOME`` for the time of the fetch.
    """
    check_clone_url(clone_url, github_url)
    deadline = time.monotonic() + limits.timeout
    home = Path(tempfile.mkdtemp(prefix="git-home-", dir=path.parent))
    try:
        path.mkdir(mode=0o700)
        env = git_environment(github_url, os.environ, home=str(home))
        init = subprocess.run(
            [git_executable(), "init", "--quiet", "--template=", str(path)],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=limits.timeout,
            check=False,
        )
        if init.returncode != 0:
            raise CheckoutFailed(f"git init failed: {init.stderr.decode(errors='replace')[-300:]}")
        read_end, write_end = os.pipe()
        try:
            # Written before git starts: a pipe holds 64 KiB, far more than a credential.
            os.write(write_end, f"username=x-access-token\npassword={token}\n".encode())
            os.close(write_end)
            write_end = -1
            fetch = subprocess.Popen(
                [
                    git_executable(),
                    "fetch",
                    "--depth=1",
                    "--no-tags",
                    "--no-write-fetch-head",
                    "--no-auto-maintenance",  # a checkout thrown away after the job needs none
                    "--quiet",
                    clone_url,
                    sha,
                ],
                cwd=path,
                env=git_environment(github_url, os.environ, home=str(home), credential_fd=read_end),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(read_end,),
                start_new_session=True,  # a group of its own, killed whole past a limit
            )
        finally:
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)
        stderr = run_limited(fetch, path, limits, timeout=limits.timeout, what="git fetch").decode(
            "utf-8", "replace"
        )
        if fetch.returncode != 0:
            raise classify_git_failure(stderr.replace(token, "***"), fetch.returncode)
        checkout = subprocess.Popen(
            [git_executable(), "checkout", "--detach", "--quiet", sha],
            cwd=path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        remaining = max(1.0, deadline - time.monotonic())
        stderr = run_limited(checkout, path, limits, timeout=remaining, what="git checkout").decode(
            "utf-8", "replace"
        )
        if checkout.returncode != 0:
            raise CheckoutRefused(f"git checkout of {sha} failed: {stderr.strip()[-300:]}")
    finally:
        shutil.rmtree(home, ignore_errors=True)
