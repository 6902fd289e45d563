"""One log format for every ghapp process, text or JSON (LOG_FORMAT), so a delivery can be
followed from web to worker: every line says which delivery and which RQ job it is about."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s [delivery %(delivery)s]: %(message)s"
NO_DELIVERY = "-"
KNOWN_JOBS = 1000  # job ids remembered with their delivery, in each process

_jobs: OrderedDict[str, str] = OrderedDict()
_jobs_lock = threading.Lock()


def remember_job(job_id: str, delivery: str | None) -> None:
    """Note the delivery a job is about (the worker does as it loads a job), so that RQ's own
    lines naming the job can say it without asking Redis."""
    if not delivery:
        return
    with _jobs_lock:
        _jobs[job_id] = delivery
        _jobs.move_to_end(job_id)
        while len(_jobs) > KNOWN_JOBS:
            _jobs.popitem(last=False)


def _known_job_in(args: object) -> tuple[str, str] | None:
    """The first job id among a record's arguments that this process knows the delivery of."""
    values = args.values() if isinstance(args, dict) else args if isinstance(args, tuple) else ()
    with _jobs_lock:
        for value in values:
            if isinstance(value, str) and value in _jobs:
                return value, _jobs[value]
    return None


class DeliveryContext(logging.Filter):
    """Give each record the delivery and the RQ job it is about: from ``extra``, else from the
    RQ job running, else (RQ's own lines) from a job id among its arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if hasattr(record, "delivery") and hasattr(record, "job"):
            return True
        from rq import get_current_job

        job_id: str | None = None
        delivery: str | None = None
        job = get_current_job()
        if job is not None:
            job_id, delivery = job.id, job.meta.get("delivery")
        elif record.args:
            found = _known_job_in(record.args)
            if found:
                job_id, delivery = found
        if not hasattr(record, "delivery"):
            record.delivery = delivery or NO_DELIVERY
        if not hasattr(record, "job"):
            record.job = job_id
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (ISO 8601, UTC), level, process, logger, message, delivery,
    job, and the exception's text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        delivery = getattr(record, "delivery", NO_DELIVERY)
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "process": record.process,
            "logger": record.name,
            "message": record.getMessage(),
            "delivery": None if delivery == NO_DELIVERY else delivery,
            "job": getattr(record, "job", None),
        }
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def formatter(log_format: str = "text") -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(FORMAT)


def use_format(handler: logging.Handler, log_format: str = "text") -> None:
    """Make ``handler`` write ghapp's lines (another library's handler, gunicorn's among them)."""
    handler.setFormatter(formatter(log_format))
    if not any(isinstance(f, DeliveryContext) for f in handler.filters):
        handler.addFilter(DeliveryContext())


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Every record of this process to standard error, in ``log_format`` (``text`` or ``json``)."""
    logging.basicConfig(level=level, force=True)
    for handler in logging.getLogger().handlers:
        use_format(handler, log_format)
    # GitPython logs every git command line at DEBUG; keep its chatter out even when debugging.
    logging.getLogger("git").setLevel(logging.INFO)


class Throttled:
    """At most one line per ``interval`` seconds per key (a reason), with the count of the lines
    held back since: a flood of bad requests cannot flood the log."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object, **kwargs: Any) -> None:
        """Log unless a line of ``key`` was logged less than ``interval`` ago; a line logged
        says how many were held back, of its key and of keys since quiet."""
        now = self.clock()
        with self._lock:
            if now - self._last.get(key, -self.interval) < self.interval:
                self._held[key] = self._held.get(key, 0) + 1
                return
            if len(self._last) > MAX_THROTTLED_KEYS:
                self._last.clear()
                self._held.clear()
            self._last[key] = now
            held = self._held.pop(key, 0)
            quiet = {
                k: n for k, n in self._held.items() if now - self._last.get(k, 0) >= self.interval
            }
            for k in quiet:
                del self._held[k]
        if held:
            message += f" ({held} more like it in the last {self.interval:g} s not logged)"
        if quiet:
            message += f" ({sum(quiet.values())} of other kinds not logged since)"
        self.logger.warning(message, *args, **kwargs)


MAX_THROTTLED_KEYS = 1000  # reasons remembered (a reason holds no input, but to be safe)
