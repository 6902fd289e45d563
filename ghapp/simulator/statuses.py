"""Commit statuses: ``POST /repos/{owner}/{repo}/statuses/{sha}`` and the combined status of
a ref (``GET /repos/{owner}/{repo}/commits/{ref}/status``)."""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request, Response

from ghapp.simulator.check_input import Invalid, json_body, status_input
from ghapp.simulator.checks import resolve_commit
from ghapp.simulator.installation_auth import authorize
from ghapp.simulator.models import CommitStatus, Repository
from ghapp.simulator.payloads import APP_SLUG, Links, iso, node_id, repository_payload, user_payload
from ghapp.simulator.registry import Registry
from ghapp.simulator.responses import error_response, json_response

BOT_USER_ID = 90_000_001  # the App's bot user ("<slug>[bot]"), which posts its statuses


class StatusesApi:
    """The commit status endpoints of one simulator."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def create(self, request: Request, links: Links, owner: str, name: str, sha: str) -> Response:
        """``POST /repos/{owner}/{repo}/statuses/{sha}`` (statuses: write)."""
        repo = authorize(request, self._registry, f"{owner}/{name}", "statuses", "write")
        if isinstance(repo, Response):
            return repo
        try:
            values = status_input(json_body(request))
        except Invalid as exc:
            return exc.response
        full_sha = resolve_commit(repo, sha)
        if full_sha is None:
            return error_response(422, f"No commit found for SHA: {sha}")
        now = self._registry.clock.now()
        status = self._registry.add_status(
            lambda status_id: CommitStatus(
                id=status_id,
                repository_id=repo.id,
                sha=full_sha,
                state=values["state"],
                description=values.get("description"),
                target_url=values.get("target_url"),
                context=values["context"],
                created_at=now,
            )
        )
        return json_response(201, status_json(status, repo, links))

    def combined(self, request: Request, links: Links, owner: str, name: str, ref: str) -> Response:
        """``GET /repos/{owner}/{repo}/commits/{ref}/status`` (statuses: read)."""
        repo = authorize(request, self._registry, f"{owner}/{name}", "statuses", "read")
        if isinstance(repo, Response):
            return repo
        sha = resolve_commit(repo, ref)
        if sha is None:
            return error_response(422, f"No commit found for SHA: {ref}")
        latest = latest_per_context(self._registry.statuses(repo.id, sha))
        repo_api = f"{links.api_url}/repos/{repo.full_name}"
        owner_id = self._registry.account_id(repo.owner)
        return json_response(
            200,
            {
                "state": combined_state(latest),
                "statuses": [status_json(s, repo, links, with_creator=False) for s in latest],
                "sha": sha,
                "total_count": len(latest),
                "repository": repository_payload(
                    repo,
                    owner_id=owner_id,
                    html_url=links.html_url,
                    api_url=links.api_url,
                    pushed_at=int(self._registry.clock.now()),
                ),
                "commit_url": f"{repo_api}/commits/{sha}",
                "url": f"{repo_api}/commits/{sha}/status",
            },
        )


def latest_per_context(statuses: list[CommitStatus]) -> list[CommitStatus]:
    """The newest status of each context, newest first."""
    latest: dict[str, CommitStatus] = {}
    for status in sorted(statuses, key=lambda s: s.id):
        latest[status.context] = status
    return sorted(latest.values(), key=lambda s: s.id, reverse=True)


def combined_state(latest: list[CommitStatus]) -> str:
    """failure if any context reports error or failure; pending if none reports or any is
    pending; success otherwise."""
    states = {s.state for s in latest}
    if states & {"error", "failure"}:
        return "failure"
    if not states or "pending" in states:
        return "pending"
    return "success"


def status_json(
    status: CommitStatus, repo: Repository, links: Links, with_creator: bool = True
) -> dict[str, Any]:
    """A commit status as the REST API shows it (the combined status omits ``creator``)."""
    body: dict[str, Any] = {
        "url": f"{links.api_url}/repos/{repo.full_name}/statuses/{status.sha}",
        "avatar_url": f"https://avatars.githubusercontent.com/in/{BOT_USER_ID}?v=4",
        "id": status.id,
        "node_id": node_id("StatusContext", status.id),
        "state": status.state,
        "description": status.description,
        "target_url": status.target_url,
        "context": status.context,
        "created_at": iso(status.created_at),
        "updated_at": iso(status.created_at),
    }
    if with_creator:
        body["creator"] = user_payload(
            f"{APP_SLUG}[bot]", BOT_USER_ID, "Bot", links.html_url, links.api_url
        )
    return body
