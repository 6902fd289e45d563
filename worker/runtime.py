"""What a worker process knows for its lifetime: its settings and the clients built from them.

``ghapp worker`` configures this once at start; a plain ``rq worker`` falls back to reading the
environment on first use. Jobs (in RQ's forked work horse) read it through ``current()``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ghapp.core import metrics
from ghapp.core.push_job import PushJob
from ghapp.core.redis_connection import connect
from ghapp.core.settings import Settings, environment, load_settings

from .github_api import GitHubAPI, session
from .reporting import Reporter
from .sandbox import Sandbox, SandboxUnavailable, choose
from .tokens import TokenSource, cache_cipher

log = logging.getLogger("ghapp.worker")
# Retries of a report call that never reached GitHub, or of a GET: about 2 s in all.
REPORT_RETRIES = 2
# Seconds a count of GitHub's answers may wait for Redis, tried once: a figure never holds up a
# call to GitHub for long, even with Redis gone.
METRICS_TIMEOUT = 1.0


@dataclass
class Runtime:
    settings: Settings
    api: GitHubAPI = field(init=False)
    report_api: GitHubAPI = field(init=False)
    # The processing command's sandbox; None with SANDBOX=none or when it cannot run here
    # (then ``sandbox_error`` says why, and jobs with a PROCESS_COMMAND fail with it).
    sandbox: Sandbox | None = field(init=False, default=None)
    sandbox_error: str | None = field(init=False, default=None)
    _metrics_redis: redis.Redis | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        self.api = GitHubAPI(self.settings.api_url, on_answer=self.count_github_answer)
        # Reports: a POST that creates a check run, or a PATCH that adds annotations, is not
        # repeated blindly (a second check run, twice the annotations): reporting.py retries
        # what is safe to repeat.
        self.report_api = GitHubAPI(
            self.settings.api_url,
            session(REPORT_RETRIES, frozenset({"GET"})),
            on_answer=self.count_github_answer,
        )
        settings = self.settings
        if not settings.process_command:
            return
        # The working directory holds .env and ghapp serve's data (the embedded Redis's files).
        hidden = [os.getcwd()]
        if os.environ.get("GHAPP_DATA_DIR"):  # ghapp serve's data (the embedded Redis's files)
            hidden.append(os.environ["GHAPP_DATA_DIR"])
        if settings.private_key_path:
            hidden.append(os.path.abspath(settings.private_key_path))
        try:
            self.sandbox = choose(settings.sandbox, network=settings.sandbox_network, hidden=hidden)
        except SandboxUnavailable as exc:
            self.sandbox_error = str(exc)

    def count_github_answer(self, status: str) -> None:
        """Count one answer from GitHub's API (``status``: ``"201"``, ``"error"``) in Redis;
        with no Redis, or Redis failing, it goes uncounted."""
        if self._metrics_redis is None:
            if not self.settings.redis_url:
                return
            client = connect(self.settings.redis_url, socket_timeout=METRICS_TIMEOUT)
            client.set_retry(Retry(NoBackoff(), 0))
            self._metrics_redis = client
        metrics.count_quietly(self._metrics_redis, "ghapp_github_requests_total", status=status)

    def tokens(self, connection: redis.Redis) -> TokenSource:
        """The App's credentials, with the token cache in ``connection``."""
        settings = self.settings
        assert settings.app_id
        assert settings.private_key
        return TokenSource(
            connection=connection,
            api=self.api,
            app_id=settings.app_id,
            private_key=settings.private_key,
            cipher=cache_cipher(settings.private_key, settings.token_cache_key),
        )

    def reporter(self, connection: redis.Redis, push: PushJob, *, job_id: str) -> Reporter:
        """How ``push``'s job is shown on GitHub (REPORT, CHECK_NAME, PUBLIC_URL)."""
        settings = self.settings
        return Reporter(
            push=push,
            mode=settings.report,
            check_name=settings.check_name,
            connection=connection,
            api=self.report_api,
            tokens=self.tokens(connection),
            details_url=f"{settings.public_url}/jobs/{job_id}" if settings.public_url else None,
        )


_current: Runtime | None = None


def configure(settings: Settings) -> Runtime:
    global _current
    settings.require_worker()
    _current = Runtime(settings)
    return _current


def current() -> Runtime:
    return _current or configure(load_settings(environment()))
