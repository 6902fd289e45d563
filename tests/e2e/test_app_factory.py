"""``create_app(Settings(...))``: the web process's ASGI app built from settings alone, driven
in-process (no server): the webhook answers, Flask answers the rest, bad settings are refused."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from ghapp.core.settings import ConfigError, Settings
from webapp import create_app
from webapp.deliveries import signature_for

SECRET = b"factory-secret"


def call(app: Any, method: str, path: str, body: bytes = b"", **headers: str) -> tuple[int, Any]:
    """One request through the ASGI app: (status, JSON body)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 3000),
    }
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(content)


@pytest.fixture(scope="module")
def app(redis_url: str) -> Any:
    return create_app(Settings(webhook_secrets=(SECRET,), redis_url=redis_url, app_id="77"))


def test_a_signed_ping_is_answered_by_the_webhook(app) -> None:
    body = b'{"zen": "Keep it logically awesome."}'
    status, answer = call(
        app,
        "POST",
        "/webhook",
        body,
        Content_Type="application/json",
        X_GitHub_Event="ping",
        X_GitHub_Delivery=str(uuid.uuid4()),
        X_Hub_Signature_256=signature_for(body, SECRET),
    )
    assert status == 200
    assert answer["status"] == "ignored"


def test_an_unsigned_delivery_is_refused_with_what_to_check(app) -> None:
    status, answer = call(app, "POST", "/webhook", b"{}", X_GitHub_Event="ping")
    assert status == 401
    assert "GITHUB_WEBHOOK_SECRET" in answer["error"]


def test_flask_answers_the_health_check_and_unknown_paths(app) -> None:
    assert call(app, "GET", "/healthz") == (200, {"status": "ok"})
    status, answer = call(app, "GET", "/nowhere")
    assert status == 404
    assert answer["status"] == "error"


def test_settings_without_a_secret_or_redis_are_refused() -> None:
    with pytest.raises(ConfigError, match="GITHUB_WEBHOOK_SECRET"):
        create_app(Settings(redis_url="redis://127.0.0.1:1/0"))
    with pytest.raises(ConfigError, match="REDIS_URL"):
        create_app(Settings(webhook_secrets=(SECRET,)))
