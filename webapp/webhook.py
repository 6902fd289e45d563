"""The HTTP shell: ``POST /webhook`` and ``GET /healthz``, thin over ``deliveries``/``accept``."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, request

from .accept import record_installation
from .deliveries import BadRequest, Ignored, InstallationChange, PushJob, read_delivery

log = logging.getLogger("ghapp.web")
blueprint = Blueprint("webhook", __name__)


@blueprint.post("/webhook")
def webhook():  # noqa: ANN201
    settings = current_app.extensions["ghapp.settings"]
    body = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
    if request.content_length is not None and len(body) != request.content_length:
        raise BadRequest("body shorter than its Content-Length: the delivery was cut off")
    delivery = read_delivery(
        request.headers,
        body,
        secrets=settings.webhook_secrets,
        app_id=settings.app_id,
        push_branches=settings.push_branches,
    )
    outcome = delivery.outcome
    extra = {"delivery": delivery.delivery, "event": delivery.event}
    if isinstance(outcome, Ignored):
        log.info("ignored delivery %s: %s", delivery.delivery, outcome.reason, extra=extra)
        return jsonify(
            {"status": "ignored", "reason": outcome.reason, "delivery": delivery.delivery}
        )
    if isinstance(outcome, InstallationChange):
        record_installation(current_app.extensions["ghapp.redis"], outcome)
        log.info("installation %s %s", outcome.installation_id, outcome.action, extra=extra)
        return jsonify({"status": "recorded", "delivery": delivery.delivery})
    assert isinstance(outcome, PushJob)
    target = request.headers.get("X-GitHub-Hook-Installation-Target-ID", "").strip()
    app_key = settings.app_id or target or "-"
    job_id = current_app.extensions["ghapp.pushes"].enqueue(
        outcome, delivery.payload_json, app=app_key
    )
    if job_id is None:
        log.info("duplicate delivery %s", delivery.delivery, extra=extra)
        return jsonify({"status": "duplicate", "delivery": delivery.delivery})
    log.info("enqueued job %s for %s %s", job_id, outcome.repository, outcome.sha, extra=extra)
    return jsonify({"status": "queued", "delivery": delivery.delivery, "job_id": job_id}), 202


@blueprint.get("/healthz")
def healthz():  # noqa: ANN201
    current_app.extensions["ghapp.redis"].ping()  # RedisError → 503 by the error handler
    return jsonify({"status": "ok"})
