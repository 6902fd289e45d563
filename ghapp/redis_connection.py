"""One way to open Redis from a URL, with timeouts that let callers fail fast and recover."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import redis


def connect(url: str, *, socket_timeout: float = 5.0) -> redis.Redis:
    """A client for ``url``; ``rediss://`` without an explicit choice accepts self-signed
    certificates, as Heroku's Redis requires."""
    options: dict[str, object] = {
        "socket_connect_timeout": 2.0,
        "socket_timeout": socket_timeout,
        "health_check_interval": 30,
        "retry_on_timeout": False,
    }
    parts = urlsplit(url)
    if parts.scheme == "rediss" and "ssl_cert_reqs" not in parse_qs(parts.query):
        options["ssl_cert_reqs"] = None
    return redis.Redis.from_url(url, **options)


def describe(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
