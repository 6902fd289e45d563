"""The simulator's notion of "now": the real clock shifted by a settable offset (clock skew)."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class SimClock:
    """``time.time() + offset``; ``offset`` may be changed at any time, from any thread."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset

    def now_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)
