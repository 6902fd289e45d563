"""One log format for every ghapp process, so a delivery can be followed from web to worker:
every line says which delivery it is about (``-`` when none)."""

from __future__ import annotations

import logging

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
