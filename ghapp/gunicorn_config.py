"""gunicorn settings for the web process (the Procfile's ``web`` line), from the environment.

The web process faces the internet and shares a machine (and a uid) with the processing step:
gunicorn's control socket is off (through it any process of the same user could stop workers),
and its workers are ``webapp.server.WebWorker``: uvicorn's, with a deadline for each request.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from gunicorn.glogging import Logger  # type: ignore[import-untyped]

from ghapp.core.logs import configure_logging, use_format
from ghapp.core.process_secrets import protect_process
from ghapp.core.settings import ConfigError, environment, load_settings

# First: the master (and the workers it forks) hold the App's secrets. This reads those that
# `ghapp web` or `ghapp serve` handed over on a pipe, and keeps them out of reach of others.
protect_process()

try:
    _settings = load_settings(environment())
except ConfigError as exc:
    print(f"ghapp web: {exc}", file=sys.stderr)
    raise SystemExit(2) from None

bind = f"{_settings.host}:{_settings.port}"
workers = _settings.web_concurrency
worker_class = "webapp.server.WebWorker"
worker_connections = 1000
# No ~/.gunicorn/gunicorn.ctl (gunicorn ≥ 25.1 opens one by default): anything running as this
# user, the processing step included, could remove web workers through it.
control_socket_disable = True
# GitHub gives a webhook 10 s; a request that needs longer is stuck, not slow.
timeout = 30
graceful_timeout = 25  # within Heroku's 30 s between SIGTERM and SIGKILL
keepalive = 5
errorlog = "-"


class GhappLogger(Logger):
    """gunicorn's own lines (and uvicorn's, which its workers send there) in LOG_FORMAT too."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        if _settings.log_format == "json":
            for handler in (*self.error_log.handlers, *self.access_log.handlers):
                use_format(handler, "json")


logger_class = GhappLogger


def on_starting(server: object) -> None:
    """Refuse to start, in one line, without the settings the web process needs."""
    try:
        _settings.require_web()
        _settings.require_redis()
    except ConfigError as exc:
        print(f"ghapp web: {exc}", file=sys.stderr)
        os._exit(2)
    configure_logging(_settings.log_level, _settings.log_format)
