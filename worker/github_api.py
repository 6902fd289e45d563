"""The few GitHub REST calls the worker makes, over one requests session with retries.

Connection errors, timeouts and 5xx are retried by urllib3 with exponential backoff and jitter.
Rate limits, clock skew and refusals become typed errors whose messages say what to fix and
never carry a token or a JWT.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .failures import Permanent, RateLimited, Transient

USER_AGENT = "ghapp"
TIMEOUT = (5, 30)  # connect, read
# GitHub's 401 messages about a JWT whose iat/exp do not fit its clock.
CLOCK_MESSAGES = ("'Issued at' claim", "'Expiration time' claim", "('iat')", "('exp')")

HINTS = {
    401: "GitHub refused the App's JWT: check GITHUB_APP_ID and the private key",
    403: "GitHub refused the installation (suspended, or permissions missing): check the "
    "App's installation settings",
    404: "not found: the App was uninstalled, or GITHUB_APP_ID / GITHUB_API_URL is wrong",
    422: "GitHub refused the token's scope: give the App 'Contents: read' and access to "
    "the repository",
}


class GitHubRefused(Permanent):
    """GitHub answered with a 4xx that retrying will not change."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ClockSkew(Transient):
    """GitHub refused the JWT's times; ``offset`` is GitHub's clock minus ours, in seconds."""

    def __init__(self, message: str, offset: float) -> None:
        super().__init__(message)
        self.offset = offset


def session(
    total_retries: int = 4, retried_methods: frozenset[str] | None = None
) -> requests.Session:
    """A session that retries connection errors and 5xx with exponential backoff and jitter;
    a 5xx or a lost answer only for ``retried_methods`` (None: every method)."""
    retry = Retry(
        total=total_retries,
        connect=total_retries,
        read=total_retries,
        status=total_retries,
        backoff_factor=0.5,
        backoff_jitter=0.5,
        backoff_max=30,
        status_forcelist=(500, 502, 503, 504),
        # None: POST too (a token, a redelivery: safe to ask twice). A request never sent (a
        # connection refused) is retried whatever its method.
        allowed_methods=retried_methods,
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    http = requests.Session()
    http.mount("https://", HTTPAdapter(max_retries=retry))
    http.mount("http://", HTTPAdapter(max_retries=retry))
    http.headers.update(
        {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": USER_AGENT,
        }
    )
    return http


def rate_limit_wait(response: requests.Response, now: float) -> float | None:
    """Seconds GitHub asks us to wait, if this answer is a rate limit; None otherwise."""
    if response.status_code not in (403, 429):
        return None
    retry_after = response.headers.get("Retry-After", "").strip()
    if retry_after.isdecimal():
        return float(retry_after)
    if response.headers.get("X-RateLimit-Remaining", "").strip() == "0":
        reset = response.headers.get("X-RateLimit-Reset", "").strip()
        if reset.isdecimal():
            return max(1.0, float(reset) - now)
        return 60.0
    if response.status_code == 429 or "rate limit" in _message(response).lower():
        return 60.0  # GitHub: with no header to go by, wait at least a minute
    return None


def clock_offset(response: requests.Response, now: float) -> float | None:
    """GitHub's clock minus ours, if this 401 is about the JWT's iat/exp and has a Date."""
    if response.status_code != 401:
        return None
    message = _message(response)
    if not any(marker in message for marker in CLOCK_MESSAGES):
        return None
    try:
        when = parsedate_to_datetime(response.headers["Date"])
        if when.tzinfo is None:  # "-0000" or no zone: HTTP dates are GMT
            when = when.replace(tzinfo=UTC)
        server_time = when.timestamp()
    except (KeyError, TypeError, ValueError):
        return None
    return server_time - now


def _message(response: requests.Response) -> str:
    try:
        message = response.json().get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message)[:200] if message else response.reason or "no message"


def answers(response: requests.Response) -> list[str]:
    """The status of every answer one call got, in order: urllib3's retried ones (``"error"``
    for an attempt that got none), then the last."""
    retries = getattr(response.raw, "retries", None)
    history = getattr(retries, "history", ()) or ()
    earlier = [str(attempt.status) if attempt.status else "error" for attempt in history]
    return [*earlier, str(response.status_code)]


class GitHubAPI:
    """``on_answer`` is told the status (``"201"``, or ``"error"`` when none came) of every
    attempt; it must not raise."""

    def __init__(
        self,
        api_url: str,
        http: requests.Session | None = None,
        on_answer: Callable[[str], None] | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.http = http or session()
        self.on_answer = on_answer

    def request(
        self,
        method: str,
        path: str,
        bearer: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> requests.Response:
        """One call; returns a 2xx answer or raises Transient / RateLimited / ClockSkew /
        GitHubRefused."""
        url = path if path.startswith(("https://", "http://")) else self.api_url + path
        try:
            response = self.http.request(
                method,
                url,
                json=body,
                params=params,
                headers={"Authorization": f"Bearer {bearer}"},
                timeout=TIMEOUT,
            )
        except requests.RequestException as exc:
            self._answered(["error"])
            raise Transient(
                f"GitHub API at {self.api_url} unreachable ({type(exc).__name__}): "
                "check GITHUB_API_URL and the network"
            ) from None
        self._answered(answers(response))
        if response.status_code < 400:
            return response
        now = time.time()
        where = f"{method} {path.split('?')[0]}"
        wait = rate_limit_wait(response, now)
        if wait is not None:
            raise RateLimited(f"{where}: GitHub rate limit, retry in {wait:.0f} s", wait)
        offset = clock_offset(response, now)
        if offset is not None:
            raise ClockSkew(
                f"{where}: GitHub refused the JWT's time (its clock is {offset:+.0f} s from ours)",
                offset,
            )
        message = (
            f"{where} answered {response.status_code} ({_message(response)}): "
            f"{HINTS.get(response.status_code, 'see https://www.githubstatus.com')}"
        )
        if response.status_code >= 500:
            raise Transient(message)
        raise GitHubRefused(message, response.status_code)

    def _answered(self, statuses: list[str]) -> None:
        if self.on_answer is not None:
            for status in statuses:
                self.on_answer(status)

    def create_installation_token(
        self,
        app_jwt: str,
        installation_id: int,
        *,
        repository_ids: tuple[int, ...],
        permissions: Mapping[str, str],
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"permissions": dict(permissions)}
        if repository_ids:
            body["repository_ids"] = list(repository_ids)
        path = f"/app/installations/{installation_id}/access_tokens"
        data = self.request("POST", path, app_jwt, body).json()
        if not isinstance(data.get("token"), str) or not isinstance(data.get("expires_at"), str):
            raise Transient("GitHub's token answer lacks 'token' or 'expires_at'")
        return data

    def create_check_run(
        self, token: str, repository: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        return dict(self.request("POST", f"/repos/{repository}/check-runs", token, body).json())

    def find_check_run(
        self, token: str, repository: str, sha: str, name: str, external_id: str
    ) -> dict[str, Any] | None:
        """The check run ``name`` on ``sha`` whose external_id is ``external_id``, if any."""
        path = f"/repos/{repository}/commits/{sha}/check-runs"
        params = {"check_name": name, "filter": "all", "per_page": 100}
        found = self.request("GET", path, token, params=params).json().get("check_runs") or []
        return next((run for run in found if run.get("external_id") == external_id), None)

    def update_check_run(
        self, token: str, repository: str, check_run_id: int, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        path = f"/repos/{repository}/check-runs/{check_run_id}"
        return dict(self.request("PATCH", path, token, body).json())

    def create_status(
        self, token: str, repository: str, sha: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        return dict(self.request("POST", f"/repos/{repository}/statuses/{sha}", token, body).json())
