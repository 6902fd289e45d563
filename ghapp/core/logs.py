"""One log format for every ghapp process, so a delivery can be followed from web to worker:
every line says which delivery it is about (``-`` when none)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s [delivery %(delivery)s]: %(message)s"


class DeliveryContext(logging.Filter):
    """Give each record the delivery it is about: from ``extra``, else from the RQ job running."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "delivery"):
            from rq import get_current_job

            job = get_current_job()
            record.delivery = job.meta.get("delivery", "-") if job is not None else "-"
        return True


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format=FORMAT, force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(DeliveryContext())
    # GitPython logs every git command line at DEBUG; keep its chatter out even when debugging.
    logging.getLogger("git").setLevel(logging.INFO)


class Throttled:
    """At most one line per ``interval`` seconds per key (a reason), with the count of the lines
    held back since: a flood of bad requests cannot flood the log."""

    def __init__(self, logger: logging.Logger, interval: float = 1.0) -> None:
        self.logger = logger
        self.interval = interval
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object, **kwargs: Any) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -self.interval) < self.interval:
                self._held[key] = self._held.get(key, 0) + 1
                return
            if len(self._last) > MAX_THROTTLED_KEYS:
                self._last.clear()
            self._last[key] = now
            held = self._held.pop(key, 0)
        if held:
            message += f" ({held} more like it in the last {self.interval:g} s not logged)"
        self.logger.warning(message, *args, **kwargs)


MAX_THROTTLED_KEYS = 1000  # reasons remembered (a reason holds no input, but to be safe)
