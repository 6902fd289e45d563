"""Sending signed webhooks to the App's URL the way GitHub's Hookshot does, recording every
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

from ghapp.simulator.models import HookDelivery
from ghapp.simulator.registry import Registry

logger = logging.getLogger(__name__)

HOOK_ID = 470001
TIMEOUT = 10.0
USER_AGENT = "GitHub-Hookshot/sim"
STATUS_OK = "OK"
STATUS_BAD_RESPONSE = "Invalid HTTP Response"
STATUS_TIMED_OUT = "timed out"
STATUS_UNREACHABLE = "failed to connect to host"
STATUS_NO_URL = "no webhook URL configured"
MAX_RESPONSE_BODY = 4096


class WebhookSender:
    """Posts webhook bodies to ``url`` signed with ``secret`` (no signature when None)."""

    def __init__(self, app_id: str, registry: Registry) -> None:
        self.app_id = app_id
        self.url: str | None = None
        self.secret: bytes | None = None
        self._registry = registry
        self._threads: list[threading.Thread] = []
        self._threads_guard = threading.Lock()

    def send(self, event: str, payload: dict[str, Any], guid: str | None = None) -> HookDelivery:
        """Deliver ``payload`` as ``event`` now and return the recorded attempt; never raises
        on network errors (they are recorded as a failed attempt)."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        return self._deliver(
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

    def _deliver(
        self,
        *,
        event: str,
        body: bytes,
        guid: str,
        action: str | None,
        installation_id: int | None,
        repository_id: int | None,
        redelivery: bool,
    ) -> HookDelivery:
        url, secret = self.url, self.secret
        headers = self._headers(event, guid, body, secret)
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
            )
        )

    def _headers(self, event: str, guid: str, body: bytes, secret: bytes | None) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": guid,
            "X-GitHub-Hook-ID": str(HOOK_ID),
            "X-GitHub-Hook-Installation-Target-Type": "integration",
            "X-GitHub-Hook-Installation-Target-ID": self.app_id,
        }
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
