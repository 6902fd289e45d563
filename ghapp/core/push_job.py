"""The push job's contract: what the web process enqueues and the worker's entry point reads.

Declared once: the fields a job carries (identifiers, never a secret), how they become RQ's
job arguments and back, and the identity its log lines and results name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The worker's entry point, as RQ stores it in each job (keep it importable there: jobs queued
# by an older version name it).
FUNCTION = "worker.jobs.process_push"


@dataclass(frozen=True)
class PushJob:
    """One push to process: exactly commit ``sha`` of ``repository``, as pushed to ``ref``."""

    delivery: str
    installation_id: int
    repository_id: int
    repository: str
    clone_url: str
    ref: str
    before: str
    sha: str
    # When GitHub took the push (epoch seconds; 0: unknown), capped at its arrival plus a small
    # skew: orders the pushes of a branch where their commits do not.
    pushed_at: int = 0
    # Where the payload waits in Redis for the processing step (set by the enqueue).
    payload_key: str | None = None
    # The event that asked for it: "push", or "check_run" / "check_suite" for a re-run asked
    # for on GitHub (it processes its commit even if the branch moved on since).
    event: str = "push"

    @property
    def rerun(self) -> bool:
        return self.event != "push"

    def to_kwargs(self) -> dict[str, Any]:
        """RQ's job arguments."""
        return dataclasses.asdict(self)

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> PushJob:
        """The job from RQ's arguments; fields an older version did not send take defaults,
        arguments this version does not know are ignored."""
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in kwargs.items() if name in names})

    @property
    def identity(self) -> dict[str, str]:
        """What log lines and results say the job is about."""
        return {
            "delivery": self.delivery,
            "repository": self.repository,
            "ref": self.ref,
            "sha": self.sha,
        }
