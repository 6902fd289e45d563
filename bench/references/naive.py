"""The naive reference: the obvious hand-rolled Flask endpoint that enqueues the whole payload."""

import hashlib
import hmac
import os

import redis
from flask import Flask, abort, jsonify, request
from rq import Queue

SECRET = os.environ["GITHUB_WEBHOOK_SECRET"].encode()
app = Flask(__name__)
queue = Queue("naive", connection=redis.Redis.from_url(os.environ["REDIS_URL"]))


def handle(payload: dict) -> None:
    """What a worker would run; never run in the benchmark."""


@app.post("/webhook")
def webhook():
    body = request.get_data()
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get("X-Hub-Signature-256", "")):
        abort(401)
    job = queue.enqueue(handle, request.get_json())
    return jsonify({"job_id": job.id}), 202
