"""gunicorn settings for the web process (the Procfile's ``web`` line), from the environment."""

from __future__ import annotations

import os
import sys

from ghapp.logs import configure_logging
from ghapp.settings import ConfigError, environment, load_settings

_env = environment()
bind = f"{_env.get('HOST', '0.0.0.0')}:{_env.get('PORT', '3000')}"
workers = int(_env.get("WEB_CONCURRENCY", "2"))
# GitHub gives a webhook 10 s; a request that needs longer is stuck, not slow.
timeout = 30
graceful_timeout = 25  # within Heroku's 30 s between SIGTERM and SIGKILL
keepalive = 5
accesslog = _env.get("GHAPP_ACCESS_LOG") or None
errorlog = "-"


def on_starting(server: object) -> None:
    """Refuse to start, in one line, without the settings the web process needs."""
    try:
        settings = load_settings(_env)
        settings.require_web()
        settings.require_redis()
    except ConfigError as exc:
        print(f"ghapp web: {exc}", file=sys.stderr)
        os._exit(2)
    configure_logging(_env.get("LOG_LEVEL"))
