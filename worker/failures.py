"""How a job can fail, as far as retrying is concerned: worth another try, or not."""

from __future__ import annotations


class Permanent(Exception):
    """Retrying will not help; the message says what to fix."""


class Transient(Exception):
    """Worth another try later: GitHub, git or the network had a bad moment."""


class RateLimited(Transient):
    """GitHub asked us to wait ``wait`` seconds before the next call."""

    def __init__(self, message: str, wait: float) -> None:
        super().__init__(message)
        self.wait = wait
