"""The REST endpoint the simulator implements: minting installation access tokens."""

from __future__ import annotations

import json
import secrets
import string
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from ghapp.simulator.app_jwt import AppJwtVerifier, JwtRejected
from ghapp.simulator.installation_auth import level_covers
from ghapp.simulator.models import MintRecord, Repository
from ghapp.simulator.payloads import node_id
from ghapp.simulator.registry import Registry
from ghapp.simulator.responses import error_response, json_response

TOKEN_PREFIX = "ghs_"
TOKEN_ALPHABET = string.ascii_letters + string.digits
NOT_ACCESSIBLE = (
    "There is at least one repository that does not exist or is not accessible to the parent "
    "installation."
)
NOT_GRANTED = "The permissions requested are not granted to this installation."


class _RequestRejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def mint_access_token(
    request: Request, installation_id: int, registry: Registry, verifier: AppJwtVerifier
) -> Response:
    """``POST /app/installations/{id}/access_tokens``: only for an installation of the App
    that signed the JWT (another App's installation is not found, as on GitHub)."""
    try:
        claims = verifier.verify(request.headers.get("Authorization"))
    except JwtRejected as exc:
        return error_response(401, exc.message)
    installation = registry.installation(installation_id)
    app = registry.app(str(claims["iss"]))
    if installation is None or app is None or installation.app_id != app.id:
        return error_response(404, "Not Found")
    if installation.suspended:
        return error_response(403, "This installation has been suspended")
    try:
        body = _json_body(request)
        available = registry.repositories_of(installation_id)
        selected = _selected_repositories(body, available)
        permissions = _requested_permissions(body, app.permissions)
    except _RequestRejected as exc:
        return error_response(exc.status, exc.message)

    now = registry.clock.now()
    expires_at = datetime.fromtimestamp(int(now) + registry.token_lifetime, UTC)
    record = MintRecord(
        token=TOKEN_PREFIX + "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(36)),
        installation_id=installation_id,
        repository_ids=None if selected is None else tuple(r.id for r in selected),
        permissions=permissions,
        expires_at=expires_at,
        jwt_claims=dict(claims),
        minted_at=now,
    )
    registry.record_mint(record)
    shown = available if selected is None else selected
    return json_response(
        201,
        {
            "token": record.token,
            "expires_at": expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "permissions": permissions,
            "repository_selection": "selected",
            "repositories": [_repository_summary(r) for r in shown],
        },
    )


def _json_body(request: Request) -> dict[str, Any]:
    raw = request.get_data(cache=False)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise _RequestRejected(400, "Problems parsing JSON") from None
    if not isinstance(body, dict):
        raise _RequestRejected(400, "Problems parsing JSON")
    return body


def _selected_repositories(
    body: dict[str, Any], available: list[Repository]
) -> list[Repository] | None:
    """The repositories the token is limited to, or None for all of the installation's."""
    ids = body.get("repository_ids")
    names = body.get("repositories")
    if not ids and not names:
        return None
    if ids is not None and (not isinstance(ids, list) or not all(_is_int(i) for i in ids)):
        raise _RequestRejected(422, "Invalid request.\n\nFor 'repository_ids', expected integers.")
    if names is not None and (
        not isinstance(names, list) or not all(isinstance(n, str) for n in names)
    ):
        raise _RequestRejected(422, "Invalid request.\n\nFor 'repositories', expected strings.")
    by_id = {r.id: r for r in available}
    by_name = {r.name.lower(): r for r in available}
    by_name.update({r.full_name.lower(): r for r in available})
    selected: dict[int, Repository] = {}
    for repo_id in ids or []:
        if repo_id not in by_id:
            raise _RequestRejected(422, NOT_ACCESSIBLE)
        selected[repo_id] = by_id[repo_id]
    for name in names or []:
        repo = by_name.get(name.lower())
        if repo is None:
            raise _RequestRejected(422, NOT_ACCESSIBLE)
        selected[repo.id] = repo
    return sorted(selected.values(), key=lambda r: r.id)


def _requested_permissions(body: dict[str, Any], granted: dict[str, str]) -> dict[str, str]:
    """The token's permissions: all of the App's when none are asked for, else those asked for,
    each at most at the level the App was granted ("read" when "write" was granted)."""
    requested = body.get("permissions")
    if requested is None:
        return dict(granted)
    if not isinstance(requested, dict) or not requested:
        raise _RequestRejected(422, NOT_GRANTED)
    for name, level in requested.items():
        if not level_covers(granted.get(name), level):
            raise _RequestRejected(422, NOT_GRANTED)
    return {"metadata": "read", **requested}


def _repository_summary(repo: Repository) -> dict[str, Any]:
    return {
        "id": repo.id,
        "node_id": node_id("Repository", repo.id),
        "name": repo.name,
        "full_name": repo.full_name,
        "private": True,
    }


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
