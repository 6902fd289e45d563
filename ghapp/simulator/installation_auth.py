"""Installation access tokens as GitHub judges them on the REST API and on git: which token is
live, which repositories it sees and which permission levels it holds."""

from __future__ import annotations

from collections.abc import Mapping

from werkzeug.wrappers import Request, Response

from ghapp.simulator.models import MintRecord, Repository
from ghapp.simulator.registry import Registry
from ghapp.simulator.responses import error_response, not_found

BAD_CREDENTIALS = "Bad credentials"
NOT_ACCESSIBLE_BY_INTEGRATION = "Resource not accessible by integration"
SUSPENDED = "This installation has been suspended"
# A level grants itself and every level below it ("write" includes "read").
LEVELS = {"read": 1, "write": 2, "admin": 3}


def level_covers(granted: str | None, wanted: object) -> bool:
    """Whether holding ``granted`` (None: nothing) allows ``wanted`` ("read", "write", ...)."""
    if granted not in LEVELS or not isinstance(wanted, str) or wanted not in LEVELS:
        return False
    return LEVELS[granted] >= LEVELS[wanted]


def permissions_cover(permissions: Mapping[str, str], name: str, level: str) -> bool:
    return level_covers(permissions.get(name), level)


def live_token(registry: Registry, token: str | None) -> MintRecord | None:
    """The record of ``token`` if it was minted here, has not expired and its installation
    still exists (deleting an installation revokes its tokens)."""
    record = registry.mint_record(token) if token else None
    if record is None or registry.clock.now_datetime() >= record.expires_at:
        return None
    return record if registry.installation(record.installation_id) is not None else None


def token_sees(registry: Registry, record: MintRecord, repo: Repository) -> bool:
    """The token's installation can see ``repo`` and the token was not narrowed away from it."""
    return registry.installation_covers(record.installation_id, repo) and (
        record.repository_ids is None or repo.id in record.repository_ids
    )


def grants(
    registry: Registry, token: str | None, repo: Repository, permission: str, level: str
) -> bool:
    """Everything at once, for callers that only answer yes or no (git over HTTP)."""
    record = live_token(registry, token)
    if record is None or not token_sees(registry, record, repo):
        return False
    installation = registry.installation(record.installation_id)
    return (
        installation is not None
        and not installation.suspended
        and permissions_cover(record.permissions, permission, level)
    )


def authorize(
    request: Request, registry: Registry, full_name: str, permission: str, level: str
) -> Repository | Response:
    """The repository a REST request may act on with ``permission`` at ``level``, or GitHub's
    refusal: 401 for an unknown or expired token, 403 for a suspended installation, 404 for a
    repository the token cannot see, 403 for a permission the token lacks."""
    record = live_token(registry, bearer_token(request.headers.get("Authorization")))
    if record is None:
        return error_response(401, BAD_CREDENTIALS)
    installation = registry.installation(record.installation_id)
    if installation is None:
        return error_response(401, BAD_CREDENTIALS)
    if installation.suspended:
        return error_response(403, SUSPENDED)
    repo = registry.repository(full_name)
    if repo is None or not token_sees(registry, record, repo):
        return not_found()
    if not permissions_cover(record.permissions, permission, level):
        return error_response(403, NOT_ACCESSIBLE_BY_INTEGRATION)
    return repo


def bearer_token(authorization: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>`` or ``Authorization: token <token>``."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() not in ("bearer", "token") or not token.strip():
        return None
    return token.strip()
