"""What a worker process knows for its lifetime: its settings and the clients built from them.

``ghapp worker`` configures this once at start; a plain ``rq worker`` falls back to reading the
environment on first use. Jobs (in RQ's forked work horse) read it through ``current()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ghapp.settings import Settings, environment, load_settings

from .github_api import GitHubAPI


@dataclass
class Runtime:
    settings: Settings
    api: GitHubAPI = field(init=False)

    def __post_init__(self) -> None:
        self.api = GitHubAPI(self.settings.api_url)


_current: Runtime | None = None


def configure(settings: Settings) -> Runtime:
    global _current
    settings.require_worker()
    _current = Runtime(settings)
    return _current


def current() -> Runtime:
    return _current or configure(load_settings(environment()))
