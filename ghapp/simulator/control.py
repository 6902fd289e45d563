"""``/_simulator/…``: what a developer does to the standalone simulator from another process
(``ghapp simulate push``, ``ghapp simulate rerun``): commit and deliver as GitHub would."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from ghapp.simulator.models import HookDelivery
from ghapp.simulator.responses import error_response, json_response

if TYPE_CHECKING:
    from ghapp.simulator.server import GitHubSimulator

PREFIX = "/_simulator/"
TOKEN_HEADER = "X-Simulator-Token"
MAX_FILES = 1000


class ControlRefused(Exception):
    """A control request that cannot be carried out; the message says why."""


def control_routes(simulator: GitHubSimulator, token: str) -> Callable[[Request], Response]:
    """The handler of ``/_simulator/push`` and ``/_simulator/rerun`` for ``simulator``: JSON
    posts carrying ``token`` (``X-Simulator-Token``) only, never a browser's (``Origin``)."""

    def handle(request: Request) -> Response:
        if request.method != "POST":
            return error_response(405, "POST only")
        given = request.headers.get(TOKEN_HEADER, "")
        if "Origin" in request.headers or not hmac.compare_digest(given.encode(), token.encode()):
            return error_response(403, f"{TOKEN_HEADER} is missing or wrong")
        if request.mimetype != "application/json":
            return error_response(415, "send application/json")
        try:
            body = json.loads(request.get_data(cache=False) or b"{}")
            if not isinstance(body, dict):
                raise ControlRefused("the body is not a JSON object")
            name = request.path[len(PREFIX) :]
            if name == "push":
                return json_response(200, push(simulator, body))
            if name == "rerun":
                return json_response(200, rerun(simulator, body))
        except ValueError as exc:  # bad JSON, or the simulator refusing (no such repository...)
            return error_response(422, str(exc))
        except ControlRefused as exc:
            return error_response(422, str(exc))
        except KeyError as exc:  # the simulator has no such repository or App
            return error_response(422, str(exc.args[0]) if exc.args else "not found")
        return error_response(404, "Not Found")

    return handle


def push(simulator: GitHubSimulator, body: dict[str, Any]) -> dict[str, Any]:
    """Commit ``files`` on ``branch`` of ``repository`` and deliver the push to every App
    installed on it."""
    full_name = _text(body, "repository")
    files = body.get("files") or {}
    if not isinstance(files, dict) or len(files) > MAX_FILES:
        raise ControlRefused(f"'files' must be an object of at most {MAX_FILES} paths")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise ControlRefused("'files' maps paths to text contents")
    branch = body.get("branch")
    if branch is not None and not isinstance(branch, str):
        raise ControlRefused("'branch' must be a string")
    message = body.get("message") or "Update files"
    deliveries = simulator.push(full_name, files=files, branch=branch, message=str(message))
    sha = simulator.branch_tip(full_name, branch)
    return {"sha": sha, "deliveries": [_delivery(d) for d in deliveries]}


def rerun(simulator: GitHubSimulator, body: dict[str, Any]) -> dict[str, Any]:
    """ "Re-run all checks" on a commit (default: the branch's tip) for every App installed on
    the repository: a ``check_suite`` ``rerequested`` delivery to each."""
    full_name = _text(body, "repository")
    branch = body.get("branch")
    if branch is not None and not isinstance(branch, str):
        raise ControlRefused("'branch' must be a string")
    sha = body.get("sha") or simulator.branch_tip(full_name, branch)
    if not isinstance(sha, str):
        raise ControlRefused("'sha' must be a string")
    sent = []
    for installation in simulator.installations_of(full_name):
        app = simulator.app(installation.app_id)
        if not app.webhook_active or not app.webhook_url:
            continue
        payload = simulator.check_suite_payload(
            full_name, sha, action="rerequested", branch=branch, app_id=app.id
        )
        payload["installation"] = {**payload.get("installation", {}), "id": installation.id}
        sent.append(simulator.send_webhook("check_suite", payload, app=app.id))
    return {"sha": sha, "deliveries": [_delivery(d) for d in sent]}


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ControlRefused(f"'{key}' is required")
    return value


def _delivery(delivery: HookDelivery) -> dict[str, Any]:
    return {
        "guid": delivery.guid,
        "event": delivery.event,
        "app_id": delivery.app_id,
        "status_code": delivery.status_code,
    }
