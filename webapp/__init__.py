"""The web process: verify webhooks, decide what they mean, enqueue jobs. Never calls GitHub."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from a2wsgi import WSGIMiddleware
from flask import Flask
from rq import Queue

from ghapp.core.redis_connection import connect
from ghapp.core.settings import Settings, environment, load_settings

from .accept import PushQueue
from .dashboard import blueprint as dashboard_blueprint
from .errors import register_error_handlers
from .health import blueprint
from .jobs import blueprint as jobs_blueprint
from .metrics import blueprint as metrics_blueprint
from .webhook import MAX_BODY, ASGIApp, WebApp, Webhook

if TYPE_CHECKING:
    from a2wsgi.wsgi_typing import WSGIApp

# Threads running Flask's routes (health checks, 404s), per web worker.
FLASK_THREADS = 2


def create_app(settings: Settings | None = None) -> WebApp:
    """The web process's ASGI app (the webhook, and Flask for every other route); without
    ``settings`` they are read from the environment and ``.env``."""
    if settings is None:
        settings = load_settings(environment())
    settings.require_web()
    settings.require_redis()
    assert settings.redis_url is not None
    flask = Flask(__name__, static_folder=None)  # the dashboard serves its own, behind auth
    flask.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    connection = connect(settings.redis_url, socket_timeout=2.0)
    flask.extensions["ghapp.redis"] = connection
    flask.register_blueprint(blueprint)
    flask.register_blueprint(jobs_blueprint)
    flask.register_blueprint(metrics_blueprint)
    flask.register_blueprint(dashboard_blueprint)
    flask.extensions["ghapp.settings"] = settings
    register_error_handlers(flask)
    pushes = PushQueue(
        Queue(settings.queue_name, connection=connection),
        job_timeout=settings.job_timeout,
        result_ttl=settings.result_ttl,
        failure_ttl=settings.failure_ttl,
        history_limit=settings.history_limit,
    )
    webhook = Webhook(settings, connection, pushes)
    # a2wsgi's and Flask's type hints describe the same WSGI and ASGI calls in other words.
    routes = WSGIMiddleware(cast("WSGIApp", flask), workers=FLASK_THREADS)
    return WebApp(webhook, cast(ASGIApp, routes))
