"""``POST /webhook``: a raw ASGI handler in front of the Flask app, thin over ``deliveries``
and ``accept``.

Flask's per-request machinery (contexts, signals, sessions, response objects) cost a third of
an acknowledgement; the webhook needs none of it, so this handler answers it directly and hands
every other request to Flask (a WSGI app, run in a thread by a2wsgi).

The body is read on the event loop: a client that sends it slowly holds a connection, never a
worker (the server cuts off a request that has not arrived in time, see
``webapp/server.py``). Deciding and enqueuing block on Redis, so they run in a small
thread pool of their own: the loop goes on reading other requests, and keeping their deadlines,
while Redis answers (or is slow to). Measured, this acknowledged as fast as deciding on the loop
itself, or faster. What waits for a thread is bounded by the server's limit on requests.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
from werkzeug.datastructures import Headers
from werkzeug.exceptions import RequestEntityTooLarge

from ghapp.core import history, metrics
from ghapp.core.logs import Throttled
from ghapp.core.push_job import PushJob
from ghapp.core.settings import Settings

from .accept import PushQueue, record_installation
from .deliveries import (
    DELIVERY_RE,
    EVENT_RE,
    BadRequest,
    Delivery,
    HeaderLookup,
    Ignored,
    InstallationChange,
    read_delivery,
)
from .errors import Answer, answer_for, json_answer, refusal, refusal_reason

log = logging.getLogger("ghapp.web")
PATH = "/webhook"
QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
# Threads deciding and enqueuing, per web worker: each holds one Redis connection at a time.
DECIDING_THREADS = 4

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ClientGone(Exception):
    """The client closed the connection (or the server cut it off) before its body was in."""


def request_headers(raw: Iterable[tuple[bytes, bytes]]) -> Headers:
    """ASGI's header pairs as a case-insensitive mapping of text, as a WSGI server gives them:
    decoded as latin-1, a repeated header's values joined with ","."""
    joined: dict[bytes, bytes] = {}
    for name, value in raw:
        joined[name] = joined[name] + b"," + value if name in joined else value
    return Headers(
        [(name.decode("latin-1"), value.decode("latin-1")) for name, value in joined.items()]
    )


async def read_body(headers: HeaderLookup, receive: Receive) -> bytes:
    """The raw body, at most MAX_BODY bytes, and all of what Content-Length announced."""
    announced = headers.get("Content-Length")
    length = None
    if announced:
        try:
            length = int(announced)
        except ValueError:
            raise BadRequest("Content-Length is not a number") from None
        if length > MAX_BODY:
            raise RequestEntityTooLarge()
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        body += message.get("body", b"")
        if len(body) > MAX_BODY:  # chunked: the server ends the stream
            raise RequestEntityTooLarge()
        if not message.get("more_body", False):
            break
    if length is not None and len(body) != length:
        raise BadRequest("body shorter than its Content-Length: the delivery was cut off")
    return bytes(body)


class Webhook:
    """What a delivery means, recorded in Redis: headers and body in, the answer out (blocks
    on Redis)."""

    def __init__(self, settings: Settings, connection: redis.Redis, pushes: PushQueue) -> None:
        self.settings = settings
        self.connection = connection
        self.pushes = pushes
        self.refusals = Throttled(log)

    def answer(self, headers: HeaderLookup, body: bytes) -> Answer:
        try:
            return self.handle(headers, body)
        except Exception as exc:  # every refusal and failure is mapped in one place
            answer = answer_for(exc)
            if 400 <= answer.status < 500:
                self.refused(headers, answer)
            return answer

    def refused(self, headers: HeaderLookup | None, answer: Answer) -> None:
        """Log a refusal (a line a second per reason at most) and keep it in the history's
        capped list of refusals; Redis failing here changes no answer."""
        reason = refusal_reason(answer)
        delivery = (headers.get("X-GitHub-Delivery") or "").strip() if headers else ""
        event = (headers.get("X-GitHub-Event") or "").strip() if headers else ""
        delivery_id = delivery if DELIVERY_RE.fullmatch(delivery) else None
        event_name = event if EVENT_RE.fullmatch(event) else None
        self.refusals.warning(
            # One line a second per kind: quoted parts name what the request sent (no
            # signature covers headers), so they are not part of the kind.
            f"{answer.status} {QUOTED.sub('…', reason)[:80]}",
            "refused with %s: %s",
            answer.status,
            reason,
            extra={"delivery": delivery_id or "-", "event": event_name},
        )
        try:
            history.refused(
                self.connection,
                status=answer.status,
                reason=reason,
                delivery=delivery_id,
                event_name=event_name,
                counter=metrics.counter_field("ghapp_webhooks_total", event="-", outcome="refused"),
            )
        except redis.RedisError:
            pass  # the refusal stands; only its record is lost

    def remember(self, delivery: Delivery, outcome: str, reason: str | None = None) -> None:
        """Keep an ignored or recorded delivery in the history, counted (pushes are kept by
        the enqueue's own script); Redis failing here changes no answer: nothing was lost."""
        payload = delivery.payload
        action = payload.get("action")
        repository = payload.get("repository")
        full_name = repository.get("full_name") if isinstance(repository, dict) else None
        try:
            history.record(
                self.connection,
                app=delivery.app,
                delivery=delivery.delivery,
                fields={
                    "event": delivery.event,
                    "action": action if isinstance(action, str) else None,
                    "repository": full_name if isinstance(full_name, str) else None,
                    "status": 200,
                    "outcome": outcome,
                    "reason": reason,
                },
                limit=self.settings.history_limit,
                counter=metrics.counter_field(
                    "ghapp_webhooks_total",
                    event=metrics.event_label(delivery.event),
                    outcome=outcome,
                ),
            )
        except redis.RedisError as exc:
            log.warning("could not record the delivery in the history: %s", type(exc).__name__)

    def handle(self, headers: HeaderLookup, body: bytes) -> Answer:
        settings = self.settings
        delivery = read_delivery(
            headers,
            body,
            secrets=settings.webhook_secrets,
            app_id=settings.app_id,
            push_branches=settings.push_branches,
        )
        outcome = delivery.outcome
        extra = {"delivery": delivery.delivery, "event": delivery.event}
        if isinstance(outcome, Ignored):
            log.info("ignored: %s", outcome.reason, extra=extra)
            self.remember(delivery, "ignored", outcome.reason)
            return json_answer(
                200, {"status": "ignored", "reason": outcome.reason, "delivery": delivery.delivery}
            )
        if isinstance(outcome, InstallationChange):
            record_installation(self.connection, outcome)
            log.info("installation %s %s", outcome.installation_id, outcome.action, extra=extra)
            self.remember(delivery, "recorded", f"installation {outcome.action}")
            return json_answer(200, {"status": "recorded", "delivery": delivery.delivery})
        assert isinstance(outcome, PushJob)
        action = delivery.payload.get("action") if outcome.rerun else None
        job_id = self.pushes.enqueue(
            outcome,
            delivery.payload_json,
            app=delivery.app,
            action=action if isinstance(action, str) else None,
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


class WebApp:
    """The web process's ASGI application: ``POST /webhook`` here, anything else to Flask."""

    def __init__(self, webhook: Webhook, fallback: ASGIApp) -> None:
        self.webhook = webhook
        self.fallback = fallback
        self.deciding = ThreadPoolExecutor(DECIDING_THREADS, thread_name_prefix="ghapp-webhook")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == PATH:
            await self.delivery(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        else:
            await self.fallback(scope, receive, send)

    async def delivery(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            answer = refusal(405, "the webhook takes POST only")
            answer.headers.append(("Allow", "POST"))
        else:
            headers = request_headers(scope["headers"])
            loop = asyncio.get_running_loop()
            try:
                body = await read_body(headers, receive)
            except ClientGone:
                return  # no one to answer
            except Exception as exc:
                answer = answer_for(exc)
                if 400 <= answer.status < 500:
                    await loop.run_in_executor(self.deciding, self.webhook.refused, headers, answer)
            else:
                answer = await loop.run_in_executor(
                    self.deciding, self.webhook.answer, headers, body
                )
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(answer.body)).encode()),
                    *((name.encode(), value.encode()) for name, value in answer.headers),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer.body})

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # The server has answered every request by now: no decision is under way.
                self.deciding.shutdown(wait=True)
                await send({"type": "lifespan.shutdown.complete"})
                return
