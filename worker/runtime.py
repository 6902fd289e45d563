"""What a worker process knows for its lifetime: its settings and the clients built from them.

``ghapp worker`` configures this once at start; a plain ``rq worker`` falls back to reading the
environment on first use. Jobs (in RQ's forked work horse) read it through ``current()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis

from ghapp.settings import Settings, environment, load_settings

from .github_api import GitHubAPI
from .tokens import TokenSource, cache_cipher


@dataclass
class Runtime:
    settings: Settings
    api: GitHubAPI = field(init=False)

    def __post_init__(self) -> None:
        self.api = GitHubAPI(self.settings.api_url)

    def tokens(self, connection: redis.Redis) -> TokenSource:
        """The App's credentials, with the token cache in ``connection``."""
        settings = self.settings
        assert settings.app_id and settings.private_key
        return TokenSource(
            connection=connection,
            api=self.api,
            app_id=settings.app_id,
            private_key=settings.private_key,
            cipher=cache_cipher(settings.private_key, settings.token_cache_key),
        )


_current: Runtime | None = None


def configure(settings: Settings) -> Runtime:
    global _current
    settings.require_worker()
    _current = Runtime(settings)
    return _current


def current() -> Runtime:
    return _current or configure(load_settings(environment()))
