"""Sending signed webhooks to an App's hook URL the way GitHub's Hookshot does, recording every
attempt (first deliveries and redeliveries)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from typing import Any

import requests

from ghapp.simulator.models import HookDelivery, SimulatedApp
from ghapp.simulator.registry import Registry

logger = logging.getLogger(__name__)

TIMEOUT = 10.0
USER_AGENT = "GitHub-Hookshot/sim"
STATUS_OK = "OK"
STATUS_BAD_RESPONSE = "Invalid HTTP Response"
STATUS_TIMED_OUT = "timed out"
STATUS_UNREACHABLE = "failed to connect to host"
STATUS_NO_URL = "no webhook URL configured"
MAX_RESPONSE_BODY = 4096


class WebhookSender:
    """Posts webhook bodies to an App's ``webhook_url`` signed with its ``webhook_secret`` (no
    signature when None); the App is the first one unless named."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._threads: list[threading.Thread] = []
        self._threads_guard = threading.Lock()

    def send(
        self,
        event: str,
        payload: dict[str, Any],
        guid: str | None = None,
        app_id: str | None = None,
    ) -> HookDelivery:
        """Deliver ``payload`` as ``event`` to App ``app_id``'s hook now and return the recorded
        attempt; never raises on network errors (they are recorded as a failed attempt)."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        return self._deliver(
            self._app(app_id),
            event=event,
            body=body,
            guid=guid or str(uuid.uuid4()),
            action=_action(payload),
            installation_id=_nested_id(payload, "installation"),
            repository_id=_nested_id(payload, "repository"),
            redelivery=False,
        )

    def redeliver_later(self, original: HookDelivery) -> None:
        """Re-send ``original``'s body with its guid from a background thread."""
        thread = threading.Thread(
            target=self.redeliver,
            args=(original,),
            name=f"github-simulator-redelivery-{original.id}",
            daemon=True,
        )
        with self._threads_guard:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def redeliver(self, original: HookDelivery) -> HookDelivery:
        return self._deliver(
            self._app(original.app_id),
            event=original.event,
            body=original.body,
            guid=original.guid,
            action=original.action,
            installation_id=original.installation_id,
            repository_id=original.repository_id,
            redelivery=True,
        )

    def join(self, timeout: float = TIMEOUT) -> None:
        """Wait for redeliveries still in flight."""
        with self._threads_guard:
            threads, self._threads = self._threads, []
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _app(self, app_id: str | None) -> SimulatedApp:
        app = self._registry.first_app() if app_id is None else self._registry.app(app_id)
        if app is None:
            raise KeyError("the simulator has no App" if app_id is None else f"no App {app_id}")
        return app

    def _deliver(
        self,
        app: SimulatedApp,
        *,
        event: str,
        body: bytes,
        guid: str,
        action: str | None,
        installation_id: int | None,
        repository_id: int | None,
        redelivery: bool,
    ) -> HookDelivery:
        url = app.webhook_url
        headers = _headers(app, event, guid, body)
        delivered_at = self._registry.clock.now_datetime()
        started = time.monotonic()
        status, status_code = STATUS_NO_URL, 0
        response_headers: dict[str, str] = {}
        response_body = ""
        if url is not None:
            try:
                response = requests.post(
                    url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False
                )
            except requests.Timeout:
                status = STATUS_TIMED_OUT
            except requests.ConnectionError:
                status = STATUS_UNREACHABLE
            except requests.RequestException as exc:
                status = f"{STATUS_BAD_RESPONSE}: {type(exc).__name__}"
            else:
                status_code = response.status_code
                ok = 200 <= status_code < 300
                status = STATUS_OK if ok else f"{STATUS_BAD_RESPONSE}: {status_code}"
                response_headers = dict(response.headers.items())
                response_body = response.text[:MAX_RESPONSE_BODY]
        duration = time.monotonic() - started
        logger.debug("webhook %s %s to %s: %s", event, guid, url, status)
        return self._registry.add_delivery(
            lambda delivery_id: HookDelivery(
                id=delivery_id,
                guid=guid,
                delivered_at=delivered_at,
                redelivery=redelivery,
                duration=duration,
                status=status,
                status_code=status_code,
                event=event,
                action=action,
                installation_id=installation_id,
                repository_id=repository_id,
                url=url,
                body=body,
                request_headers=headers,
                response_headers=response_headers,
                response_body=response_body,
                app_id=app.id,
            )
        )


def _headers(app: SimulatedApp, event: str, guid: str, body: bytes) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": guid,
        "X-GitHub-Hook-ID": str(app.hook_id),
        "X-GitHub-Hook-Installation-Target-Type": "integration",
        "X-GitHub-Hook-Installation-Target-ID": app.id,
    }
    secret = app.webhook_secret
    if secret is not None:
        headers["X-Hub-Signature"] = "sha1=" + hmac.new(secret, body, hashlib.sha1).hexdigest()
        headers["X-Hub-Signature-256"] = "sha256=" + sign(secret, body)
    return headers


def sign(secret: bytes, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``body``, as in ``X-Hub-Signature-256: sha256=<hex>``."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def _action(payload: dict[str, Any]) -> str | None:
    action = payload.get("action")
    return action if isinstance(action, str) else None


def _nested_id(payload: dict[str, Any], key: str) -> int | None:
    value = payload.get(key)
    nested = value.get("id") if isinstance(value, dict) else None
    return nested if isinstance(nested, int) and not isinstance(nested, bool) else None
