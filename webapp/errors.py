"""Every refusal the web process can give, as one-line JSON with the right status code, decided
in one place for the webhook endpoint and for Flask's own routes."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import orjson
import redis
from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from .deliveries import DeliveryError

log = logging.getLogger("ghapp.web")
RETRY_AFTER_SECONDS = 10
REDIS_REFUSED = (
    "the queue (Redis) refused to store the delivery (out of memory?); "
    "GitHub can redeliver this later"
)
REDIS_AUTH = "the queue (Redis) refused ghapp's credentials: check REDIS_URL's password"
AUTH_REPLIES = ("NOAUTH", "WRONGPASS")
MESSAGES = {
    413: "body larger than 25 MiB, GitHub's own limit for webhook payloads",
    503: "the queue (Redis) is unreachable; GitHub can redeliver this later",
    500: "internal error; the delivery was not accepted and can be redelivered",
}


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_answer(status: int, content: dict[str, object], **headers: str) -> Answer:
    return Answer(status, orjson.dumps(content), list(headers.items()))


def answer_for(exc: Exception) -> Answer:
    """The HTTP answer to a request that raised ``exc``."""
    if isinstance(exc, DeliveryError):
        return refusal(exc.status, str(exc))
    if isinstance(exc, redis.RedisError):
        log.warning("Redis failed, answering 503: %s: %s", type(exc).__name__, exc)
        unreachable = isinstance(exc, (redis.ConnectionError, redis.TimeoutError))
        if isinstance(exc, redis.AuthenticationError) or str(exc).startswith(AUTH_REPLIES):
            message = REDIS_AUTH
        else:
            message = MESSAGES[503] if unreachable else REDIS_REFUSED
        return json_answer(
            503, {"status": "error", "error": message}, **{"Retry-After": str(RETRY_AFTER_SECONDS)}
        )
    if isinstance(exc, HTTPException):
        code = exc.code or 500
        return refusal(code, MESSAGES.get(code, exc.description or exc.name))
    log.error("unexpected error handling a request", exc_info=exc)
    return refusal(500, MESSAGES[500])


def refusal(status: int, message: str) -> Answer:
    return json_answer(status, {"status": "error", "error": message})


def refusal_reason(answer: Answer) -> str:
    """The one-line reason a refusal gives (its JSON's ``error``)."""
    try:
        return str(orjson.loads(answer.body).get("error") or answer.status)
    except (orjson.JSONDecodeError, AttributeError):
        return str(answer.status)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(Exception)
    def any_error(exc: Exception) -> Response:
        answer = answer_for(exc)
        return Response(answer.body, answer.status, answer.headers, content_type="application/json")
