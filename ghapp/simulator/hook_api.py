"""The App webhook REST endpoints: list, show and redeliver ``/app/hook/deliveries`` (each App
sees its own hook's deliveries)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

from ghapp.simulator.app_jwt import AppJwtVerifier, JwtRejected
from ghapp.simulator.models import HookDelivery
from ghapp.simulator.registry import Registry
from ghapp.simulator.responses import error_response, json_response
from ghapp.simulator.webhooks import WebhookSender

DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100


def list_deliveries(request: Request, registry: Registry, verifier: AppJwtVerifier) -> Response:
    """``GET /app/hook/deliveries``: newest first, paged by an opaque ``cursor``."""
    app_id = _authenticate(request, verifier)
    if isinstance(app_id, Response):
        return app_id
    per_page = _per_page(request.args.get("per_page"))
    cursor = request.args.get("cursor")
    newest_first = sorted(registry.deliveries(app_id), key=lambda d: d.id, reverse=True)
    if cursor:
        if not cursor.isdigit():
            return error_response(400, "Invalid cursor")
        newest_first = [d for d in newest_first if d.id < int(cursor)]
    page = newest_first[:per_page]
    headers = {}
    if len(newest_first) > per_page:
        query = urlencode({"per_page": per_page, "cursor": page[-1].id})
        headers["Link"] = f'<{request.base_url}?{query}>; rel="next"'
    return json_response(200, [delivery_summary(d) for d in page], headers)


def get_delivery(
    request: Request, delivery_id: int, registry: Registry, verifier: AppJwtVerifier
) -> Response:
    """``GET /app/hook/deliveries/{id}``: one attempt with its request and response."""
    delivery = _find(request, delivery_id, registry, verifier)
    if isinstance(delivery, Response):
        return delivery
    return json_response(200, delivery_details(delivery))


def redeliver(
    request: Request,
    delivery_id: int,
    registry: Registry,
    verifier: AppJwtVerifier,
    sender: WebhookSender,
) -> Response:
    """``POST /app/hook/deliveries/{id}/attempts``: 202 now, the re-send happens afterwards."""
    delivery = _find(request, delivery_id, registry, verifier)
    if isinstance(delivery, Response):
        return delivery
    registry.record_redelivery_request(delivery_id)
    sender.redeliver_later(delivery)
    return json_response(202, {})


def delivery_summary(delivery: HookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "guid": delivery.guid,
        "delivered_at": delivery.delivered_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "redelivery": delivery.redelivery,
        "duration": round(delivery.duration, 3),
        "status": delivery.status,
        "status_code": delivery.status_code,
        "event": delivery.event,
        "action": delivery.action,
        "installation_id": delivery.installation_id,
        "repository_id": delivery.repository_id,
        "throttled_at": None,
    }


def delivery_details(delivery: HookDelivery) -> dict[str, Any]:
    try:
        payload = json.loads(delivery.body)
    except ValueError:
        payload = None
    return {
        **delivery_summary(delivery),
        "url": delivery.url,
        "request": {"headers": delivery.request_headers, "payload": payload},
        "response": {"headers": delivery.response_headers, "payload": delivery.response_body},
    }


def _find(
    request: Request, delivery_id: int, registry: Registry, verifier: AppJwtVerifier
) -> HookDelivery | Response:
    """The delivery asked for, or the refusal to answer with (401 without an App's JWT, 404
    for another App's delivery or none)."""
    app_id = _authenticate(request, verifier)
    if isinstance(app_id, Response):
        return app_id
    delivery = registry.delivery(delivery_id)
    if delivery is None or delivery.app_id != app_id:
        return error_response(404, "Not Found")
    return delivery


def _authenticate(request: Request, verifier: AppJwtVerifier) -> str | Response:
    """The id of the App whose JWT signed the request, or the 401 to answer."""
    try:
        claims = verifier.verify(request.headers.get("Authorization"))
    except JwtRejected as exc:
        return error_response(401, exc.message)
    return str(claims["iss"])


def _per_page(raw: str | None) -> int:
    try:
        value = int(raw) if raw is not None else DEFAULT_PER_PAGE
    except ValueError:
        return DEFAULT_PER_PAGE
    return min(max(value, 1), MAX_PER_PAGE)
