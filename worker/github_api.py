"""The few GitHub REST calls the worker makes, over one requests session with retries.

Errors name what GitHub said and what to fix; they never carry a token or a JWT.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

USER_AGENT = "ghapp"
TIMEOUT = (5, 30)  # connect, read


class GitHubError(Exception):
    """GitHub answered with an error; ``status`` is its HTTP status (0: no answer at all)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


HINTS = {
    401: "GitHub refused the App's JWT: check GITHUB_APP_ID, the private key and this "
    "machine's clock",
    403: "GitHub refused the installation (suspended, or permissions missing): check the "
    "App's installation settings",
    404: "installation not found: the App was uninstalled or GITHUB_APP_ID is wrong",
    422: "GitHub refused the token's scope: give the App 'Contents: read' and access to "
    "the repository",
}


def session(total_retries: int = 4) -> requests.Session:
    """A session that retries connection errors and 5xx with exponential backoff and jitter."""
    retry = Retry(
        total=total_retries,
        connect=total_retries,
        read=total_retries,
        status=total_retries,
        backoff_factor=0.5,
        backoff_jitter=0.5,
        backoff_max=30,
        status_forcelist=(500, 502, 503, 504),
        allowed_methods=None,  # POST too: minting a token twice is harmless
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


class GitHubAPI:
    def __init__(self, api_url: str, http: requests.Session | None = None) -> None:
        self.api_url = api_url.rstrip("/")
        self.http = http or session()

    def _post(self, path: str, bearer: str, body: Mapping[str, Any]) -> dict[str, Any]:
        try:
            response = self.http.post(
                self.api_url + path,
                json=body,
                headers={"Authorization": f"Bearer {bearer}"},
                timeout=TIMEOUT,
            )
        except requests.RequestException as exc:
            raise GitHubError(
                f"GitHub API at {self.api_url} unreachable ({type(exc).__name__}): "
                "check GITHUB_API_URL and the network"
            ) from None
        if response.status_code >= 400:
            raise GitHubError(
                f"POST {path} answered {response.status_code} "
                f"({_message(response)}): {HINTS.get(response.status_code, 'see GitHub status')}",
                response.status_code,
            )
        data = response.json()
        if not isinstance(data, dict):
            raise GitHubError(f"POST {path} answered something that is not a JSON object")
        return data

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
        data = self._post(f"/app/installations/{installation_id}/access_tokens", app_jwt, body)
        if not isinstance(data.get("token"), str) or not isinstance(data.get("expires_at"), str):
            raise GitHubError("GitHub's token answer lacks 'token' or 'expires_at'")
        return data


def _message(response: requests.Response) -> str:
    try:
        message = response.json().get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message)[:200] if message else response.reason or "no message"
