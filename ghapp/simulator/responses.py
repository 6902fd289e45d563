"""JSON responses shaped like GitHub's REST API answers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from werkzeug.wrappers import Response

DOCUMENTATION_URL = "https://docs.github.com/rest"


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    response = Response(
        json.dumps(body, indent=2) + "\n",
        status=status,
        content_type="application/json; charset=utf-8",
    )
    response.headers["X-GitHub-Media-Type"] = "github.v3; format=json"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def error_response(
    status: int, message: str | None = None, headers: Mapping[str, str] | None = None
) -> Response:
    """``{"message": ..., "documentation_url": ...}`` as GitHub sends with 4xx/5xx answers."""
    if message is None:
        try:
            message = HTTPStatus(status).phrase
        except ValueError:
            message = "Error"
    return json_response(
        status, {"message": message, "documentation_url": DOCUMENTATION_URL}, headers
    )


def not_found() -> Response:
    return error_response(404, "Not Found")


def validation_failed(resource: str, field: str, code: str, message: str | None = None) -> Response:
    """422 ``Validation Failed`` with one entry in ``errors``, as GitHub's models answer
    (``code`` is ``missing_field``, ``invalid`` or ``custom``; ``custom`` carries a message)."""
    error: dict[str, Any] = {"resource": resource, "code": code, "field": field}
    if message is not None:
        error["message"] = message
    return json_response(
        422,
        {"message": "Validation Failed", "errors": [error], "documentation_url": DOCUMENTATION_URL},
    )
