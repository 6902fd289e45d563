"""Every refusal the web process can give, as one-line JSON with the right status code."""

from __future__ import annotations

import logging

import redis
from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from .deliveries import DeliveryError

log = logging.getLogger("ghapp.web")
RETRY_AFTER_SECONDS = 10


def error(status: int, message: str):  # noqa: ANN201 - a Flask response tuple
    return jsonify({"status": "error", "error": message}), status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DeliveryError)
    def refused(exc: DeliveryError):  # noqa: ANN202
        return error(exc.status, str(exc))

    @app.errorhandler(redis.RedisError)
    def redis_down(exc: redis.RedisError):  # noqa: ANN202
        log.warning("Redis unavailable, answering 503: %s", type(exc).__name__)
        response, status = error(
            503, "the queue (Redis) is unreachable; GitHub can redeliver this later"
        )
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response, status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):  # noqa: ANN202
        messages = {413: "body larger than 25 MiB, GitHub's own limit for webhook payloads"}
        return error(exc.code or 500, messages.get(exc.code or 0, exc.description or exc.name))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):  # noqa: ANN202
        log.exception("unexpected error handling a request")
        return error(500, "internal error; the delivery was not accepted and can be redelivered")
