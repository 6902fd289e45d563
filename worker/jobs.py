"""The RQ entry points: thin shells that fetch a token, check out the commit and process it."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from rq import get_current_job

from ghapp import keys

from . import runtime
from .checkout import checkout
from .processing import PushContext, process
from .tokens import TokenSource, cache_cipher

log = logging.getLogger("ghapp.worker.jobs")

PERMISSIONS = {"contents": "read"}


def process_push(
    *,
    delivery: str,
    installation_id: int,
    repository_id: int,
    repository: str,
    clone_url: str,
    ref: str,
    before: str,
    sha: str,
) -> dict[str, Any]:
    """Process one push: exactly commit ``sha`` of ``repository``, as pushed to ``ref``."""
    started = time.monotonic()
    job = get_current_job()
    assert job is not None, "process_push runs inside an RQ job"
    rt = runtime.current()
    settings = rt.settings
    assert settings.app_id and settings.private_key
    extra = {"delivery": delivery, "job_id": job.id}
    raw = job.connection.get(keys.payload(job.id))
    payload = json.loads(raw) if raw else {}
    tokens = TokenSource(
        connection=job.connection,
        api=rt.api,
        app_id=settings.app_id,
        private_key=settings.private_key,
        cipher=cache_cipher(settings.private_key, settings.token_cache_key),
    )
    token = tokens.token(installation_id, repository_ids=(repository_id,), permissions=PERMISSIONS)
    deadline = started + settings.job_timeout
    log.info("delivery %s: checking out %s at %s", delivery, repository, sha, extra=extra)
    with checkout(
        clone_url,
        sha,
        token=token,
        github_url=settings.github_url,
        timeout=max(1.0, deadline - time.monotonic()),
    ) as path:
        del token  # nothing below needs it
        context = PushContext(
            path=path, repository=repository, ref=ref, sha=sha, delivery=delivery, payload=payload
        )
        result = process(
            context,
            processor=settings.processor,
            command=settings.process_command,
            timeout=max(1.0, deadline - time.monotonic()),
        )
    job.connection.delete(keys.payload(job.id))
    result.update(delivery=delivery, repository=repository, ref=ref, sha=sha)
    log.info(
        "delivery %s: processed %s at %s in %.2fs",
        delivery,
        repository,
        sha,
        time.monotonic() - started,
        extra=extra,
    )
    return result
