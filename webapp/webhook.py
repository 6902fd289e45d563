"""``POST /webhook``: a plain WSGI handler in front of the Flask app, thin over ``deliveries``
and ``accept``.

Flask's per-request machinery (contexts, signals, sessions, response objects) cost a third of
an acknowledgement; the webhook needs none of it, so this handler answers it directly and hands
every other request to Flask.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import redis
from werkzeug.datastructures import EnvironHeaders
from werkzeug.exceptions import RequestEntityTooLarge

from ghapp.settings import Settings

from .accept import PushQueue, record_installation
from .deliveries import BadRequest, Ignored, InstallationChange, PushJob, read_delivery
from .errors import Answer, answer_for, json_answer, refusal

log = logging.getLogger("ghapp.web")
PATH = "/webhook"
MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def read_body(environ: dict[str, Any]) -> bytes:
    """The raw body, at most MAX_BODY bytes, and all of what Content-Length announced."""
    stream = environ["wsgi.input"]
    announced = environ.get("CONTENT_LENGTH")
    if announced:
        try:
            length = int(announced)
        except ValueError:
            raise BadRequest("Content-Length is not a number") from None
        if length > MAX_BODY:
            raise RequestEntityTooLarge()
        body = stream.read(length)
        if len(body) != length:
            raise BadRequest("body shorter than its Content-Length: the delivery was cut off")
        return body
    body = stream.read(MAX_BODY + 1)  # chunked: the server ends the stream
    if len(body) > MAX_BODY:
        raise RequestEntityTooLarge()
    return body


class WebhookEndpoint:
    def __init__(
        self, settings: Settings, connection: redis.Redis, pushes: PushQueue, fallback: WSGIApp
    ) -> None:
        self.settings = settings
        self.connection = connection
        self.pushes = pushes
        self.fallback = fallback

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") != PATH:
            return self.fallback(environ, start_response)
        if environ.get("REQUEST_METHOD") != "POST":
            answer = refusal(405, "the webhook takes POST only")
            answer.headers.append(("Allow", "POST"))
        else:
            try:
                answer = self.handle(environ)
            except Exception as exc:  # every refusal and failure is mapped in one place
                answer = answer_for(exc)
        phrase = HTTPStatus(answer.status).phrase
        start_response(
            f"{answer.status} {phrase}",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(answer.body))),
                *answer.headers,
            ],
        )
        return [answer.body]

    def handle(self, environ: dict[str, Any]) -> Answer:
        settings = self.settings
        headers = EnvironHeaders(environ)
        delivery = read_delivery(
            headers,
            read_body(environ),
            secrets=settings.webhook_secrets,
            app_id=settings.app_id,
            push_branches=settings.push_branches,
        )
        outcome = delivery.outcome
        extra = {"delivery": delivery.delivery, "event": delivery.event}
        if isinstance(outcome, Ignored):
            log.info("ignored: %s", outcome.reason, extra=extra)
            return json_answer(
                200, {"status": "ignored", "reason": outcome.reason, "delivery": delivery.delivery}
            )
        if isinstance(outcome, InstallationChange):
            record_installation(self.connection, outcome)
            log.info("installation %s %s", outcome.installation_id, outcome.action, extra=extra)
            return json_answer(200, {"status": "recorded", "delivery": delivery.delivery})
        assert isinstance(outcome, PushJob)
        target = (headers.get("X-GitHub-Hook-Installation-Target-ID") or "").strip()
        job_id = self.pushes.enqueue(
            outcome, delivery.payload_json, app=settings.app_id or target or "-"
        )
        if job_id is None:
            log.info("duplicate: already accepted", extra=extra)
            return json_answer(200, {"status": "duplicate", "delivery": delivery.delivery})
        # The hot path logs at DEBUG (a line costs 7% of an acknowledgement); the worker logs
        # the job under the same delivery id.
        log.debug(
            "queued job %s for %s at %s", job_id, outcome.repository, outcome.sha, extra=extra
        )
        return json_answer(
            202, {"status": "queued", "delivery": delivery.delivery, "job_id": job_id}
        )
