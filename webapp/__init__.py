"""The web process: verify webhooks, decide what they mean, enqueue jobs. Never calls GitHub."""

from __future__ import annotations

from flask import Flask
from rq import Queue

from ghapp.redis_connection import connect
from ghapp.settings import Settings, environment, load_settings

from .accept import PushQueue
from .errors import register_error_handlers
from .health import blueprint
from .webhook import MAX_BODY, WebhookEndpoint


def create_app(settings: Settings | None = None) -> Flask:
    """The Flask app; without ``settings`` they are read from the environment and ``.env``."""
    if settings is None:
        settings = load_settings(environment())
    settings.require_web()
    settings.require_redis()
    assert settings.redis_url is not None
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    connection = connect(settings.redis_url, socket_timeout=2.0)
    app.extensions["ghapp.redis"] = connection
    app.register_blueprint(blueprint)
    register_error_handlers(app)
    pushes = PushQueue(
        Queue(settings.queue_name, connection=connection), job_timeout=settings.job_timeout
    )
    app.wsgi_app = WebhookEndpoint(settings, connection, pushes, app.wsgi_app)  # type: ignore[method-assign]
    return app
