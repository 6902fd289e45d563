"""One log format for every ghapp process, so a delivery can be followed from web to worker."""

from __future__ import annotations

import logging
import os

FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


def configure_logging(level: str | None = None) -> None:
    logging.basicConfig(
        level=(level or os.environ.get("LOG_LEVEL") or "INFO").upper(), format=FORMAT, force=True
    )
    # GitPython logs every git command line at DEBUG; keep its chatter out even when debugging.
    logging.getLogger("git").setLevel(logging.INFO)
