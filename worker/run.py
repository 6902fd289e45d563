"""Start one worker process: an RQ worker on ghapp's queue, with RQ's scheduler for retries."""

from __future__ import annotations

from rq import Queue, Worker

from ghapp.redis_connection import connect
from ghapp.settings import Settings, check_private_key

from . import runtime


def run_worker(settings: Settings, *, burst: bool = False) -> bool:
    settings.require_redis()
    settings.require_worker()
    assert settings.redis_url and settings.private_key
    check_private_key(settings.private_key)
    runtime.configure(settings)
    connection = connect(settings.redis_url)
    queue = Queue(settings.queue_name, connection=connection)
    worker = Worker([queue], connection=connection)
    return worker.work(burst=burst, with_scheduler=True, logging_level="INFO")
