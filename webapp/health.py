"""``GET /healthz``: 200 when Redis answers, 503 otherwise (for load balancers and platforms)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    current_app.extensions["ghapp.redis"].ping()  # RedisError → 503 by the error handler
    return jsonify({"status": "ok"})
