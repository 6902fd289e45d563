"""Fetch exactly one commit into a fresh private directory, and remove it afterwards.

The token reaches git only as an HTTP header in git's environment (``GIT_CONFIG_*``), scoped to
GitHub's origin: never in a URL, on a command line, or in ``.git/config``.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import git

DEFAULT_PORTS = {"http": 80, "https": 443}
CHECKOUT_PREFIX = "ghapp-checkout-"
# Variables that would make git print traffic or ask for credentials: never passed to git.
UNSAFE_GIT_ENV = ("GIT_TRACE", "GIT_CURL_VERBOSE", "GIT_ASKPASS", "SSH_ASKPASS", "GIT_CONFIG")
# (the GIT_CONFIG prefix also drops any GIT_CONFIG_COUNT/KEY/VALUE of the caller's own)


class CheckoutError(Exception):
    """The commit could not be fetched or checked out; the message says why, without secrets."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL, with the scheme's default port filled in."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise CheckoutError(f"{url!r} is not an http(s) URL")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise CheckoutError(f"{url!r} has an invalid port") from None
    return scheme, parts.hostname.lower(), port


def check_clone_url(clone_url: str, github_url: str) -> None:
    """Refuse a clone URL that is not on GitHub's origin: the token goes nowhere else."""
    parts = urlsplit(clone_url)
    if parts.username or parts.password or parts.query or parts.fragment:
        raise CheckoutError("repository.clone_url carries credentials, a query or a fragment")
    if origin(clone_url) != origin(github_url):
        raise CheckoutError(
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


def _explain(exc: git.GitCommandError, token: str) -> CheckoutError:
    stderr = str(exc.stderr or "").replace(token, "***")
    status = 0
    for code in (401, 403, 404):
        if f"returned error: {code}" in stderr or f" {code} " in stderr:
            status = code
            break
    last = [line.strip() for line in stderr.splitlines() if line.strip()]
    detail = last[-1][:300] if last else f"exit status {exc.status}"
    hints = {
        401: "the installation token was refused",
        403: "the installation has no access to this repository",
        404: "repository or commit not found",
    }
    return CheckoutError(f"git fetch failed: {hints.get(status, detail)} ({detail})", status)


def fetch_commit(
    path: Path,
    clone_url: str,
    sha: str,
    *,
    token: str,
    github_url: str,
    timeout: float | None = None,
) -> None:
    """Fetch ``sha`` alone (depth 1) from ``clone_url`` into ``path`` and check it out detached."""
    check_clone_url(clone_url, github_url)
    repo = git.Repo.init(path)
    env = git_environment(token, github_url, os.environ)
    try:
        repo.git.fetch(
            "--depth=1",
            "--no-tags",
            "--no-write-fetch-head",
            "--quiet",
            clone_url,
            sha,
            env=env,
            kill_after_timeout=timeout,
        )
    except git.GitCommandError as exc:
        raise _explain(exc, token) from None
    try:
        repo.git.checkout("--detach", "--quiet", sha)
    except git.GitCommandError as exc:
        raise CheckoutError(f"git checkout of {sha} failed: exit status {exc.status}") from None
    finally:
        repo.close()


@contextmanager
def checkout(
    clone_url: str, sha: str, *, token: str, github_url: str, timeout: float | None = None
) -> Iterator[Path]:
    """A private (0700) directory holding ``sha`` checked out; removed on exit, whatever happens."""
    path = Path(tempfile.mkdtemp(prefix=CHECKOUT_PREFIX))
    try:
        fetch_commit(path, clone_url, sha, token=token, github_url=github_url, timeout=timeout)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
