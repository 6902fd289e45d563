"""The floor: a minimal WSGI app that checks the HMAC and LPUSHes the raw body. Nothing less
can acknowledge a webhook safely; it dedupes nothing and parses nothing."""

import hashlib
import hmac
import os

import redis

SECRET = os.environ["GITHUB_WEBHOOK_SECRET"].encode()
connection = redis.Redis.from_url(os.environ["REDIS_URL"])


def app(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, environ.get("HTTP_X_HUB_SIGNATURE_256", "")):
        start_response("401 Unauthorized", [("Content-Type", "text/plain")])
        return [b"bad signature"]
    connection.lpush("floor:deliveries", body)
    start_response("202 Accepted", [("Content-Type", "text/plain")])
    return [b"queued"]
