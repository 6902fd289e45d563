"""Fetch exactly one commit into a private directory, within limits of size and time.

The token reaches git only as an HTTP header in git's environment (``GIT_CONFIG_*``), scoped to
GitHub's origin: never in a URL, on a command line, or in ``.git/config``.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import git

from .failures import Permanent, Transient

DEFAULT_PORTS = {"http": 80, "https": 443}
# Variables that would make git print traffic, ask for credentials or trust another server:
# never passed to the git that carries the token. (GIT_CONFIG also drops GIT_CONFIG_PARAMETERS
# and any GIT_CONFIG_COUNT/KEY/VALUE of the caller's own; GIT_TRACE drops GIT_TRACE_REDACT.)
UNSAFE_GIT_ENV = (
    "GIT_TRACE",
    "GIT_CURL_VERBOSE",
    "GIT_ASKPASS",
    "SSH_ASKPASS",
    "GIT_SSL_NO_VERIFY",
    "GIT_CONFIG",
)
HTTP_STATUS_RE = re.compile(r"returned error: (\d{3})|HTTP (\d{3})")
SIZE_CHECK_SECONDS = 0.2
# What git prints when the server answers 401 (it then wants a username it may not ask for).
AUTH_REFUSED = ("could not read Username", "terminal prompts disabled", "Authentication failed")


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


def git_environment(token: str, github_url: str, base: Mapping[str, str]) -> dict[str, str]:
    """The environment for a git process that authenticates to ``github_url`` with ``token``."""
    scheme, host, port = origin(github_url)
    netloc = host if port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
    credential = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    env = {k: v for k, v in base.items() if not k.startswith(UNSAFE_GIT_ENV)}
    config = {
        f"http.{scheme}://{netloc}/.extraHeader": f"Authorization: Basic {credential}",
        "http.followRedirects": "false",
        "credential.helper": "",
        "core.askPass": "",
        "protocol.version": "2",
    }
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for index, (key, value) in enumerate(config.items()):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    return env


def directory_size(path: Path) -> int:
    total = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass  # a temporary file git just renamed
    return total


def run_limited(
    process: subprocess.Popen[bytes], path: Path, *, max_bytes: int, timeout: float, what: str
) -> bytes:
    """Wait for ``process``; kill it if ``path`` grows past ``max_bytes`` or time runs out.
    Returns its stderr."""
    over = threading.Event()
    done = threading.Event()

    def watch() -> None:
        while not done.wait(SIZE_CHECK_SECONDS):
            if directory_size(path) > max_bytes:
                over.set()
                process.kill()
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise CheckoutTimedOut(
            f"{what} took longer than {timeout:.0f} s: raise CHECKOUT_TIMEOUT if the repository "
            "is that large"
        ) from None
    finally:
        done.set()
        watcher.join()
    if over.is_set() or directory_size(path) > max_bytes:  # also what grew between checks
        raise CheckoutRefused(
            f"{what} grew past {max_bytes // (1024 * 1024)} MiB: raise CHECKOUT_MAX_MB if the "
            "repository is that large"
        )
    return stderr or b""


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
    if status == 404 or "not our ref" in stderr or "unadvertised object" in stderr:
        return CheckoutRefused(f"git fetch: repository or commit not found ({detail})")
    return CheckoutFailed(f"git fetch failed ({detail})", status)


def fetch_commit(
    path: Path,
    clone_url: str,
    sha: str,
    *,
    token: str,
    github_url: str,
    timeout: float,
    max_bytes: int,
) -> None:
    """Fetch ``sha`` alone (depth 1) from ``clone_url`` into ``path``; check it out detached."""
    check_clone_url(clone_url, github_url)
    deadline = time.monotonic() + timeout
    path.mkdir(mode=0o700, exist_ok=True)
    repo = git.Repo.init(path)
    try:
        # Not through GitPython: it would start from this process's environment and add ours,
        # letting a GIT_TRACE_CURL or GIT_CONFIG_PARAMETERS of the worker's reach the git that
        # carries the token. This git gets exactly the environment built for it.
        fetch = subprocess.Popen(
            [
                git.Git.GIT_PYTHON_GIT_EXECUTABLE or "git",
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
            env=git_environment(token, github_url, os.environ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        stderr = run_limited(
            fetch, path, max_bytes=max_bytes, timeout=timeout, what="git fetch"
        ).decode("utf-8", "replace")
        if fetch.returncode != 0:
            raise classify_git_failure(stderr.replace(token, "***"), fetch.returncode)
        checkout = repo.git.checkout("--detach", "--quiet", sha, as_process=True)
        remaining = max(1.0, deadline - time.monotonic())
        stderr = run_limited(
            checkout.proc, path, max_bytes=max_bytes, timeout=remaining, what="git checkout"
        ).decode("utf-8", "replace")
        if checkout.proc.returncode != 0:
            raise CheckoutRefused(f"git checkout of {sha} failed: {stderr.strip()[-300:]}")
    finally:
        repo.close()
