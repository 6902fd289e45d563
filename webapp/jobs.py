"""``GET /jobs/<id>``: one job's state and result as JSON, where a check run's "Details" link
leads (PUBLIC_URL). Job ids are random: the link is the only way to one."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, abort, current_app, jsonify
from rq.exceptions import DeserializationError, NoSuchJobError
from rq.job import Job

from ghapp.core.push_job import FUNCTION as PUSH_JOB

blueprint = Blueprint("jobs", __name__)
# RQ's job ids (uuid4, with or without dashes): anything else is no job of ours.
JOB_ID_RE = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")


@blueprint.get("/jobs/<job_id>")
def show(job_id: str) -> Response:
    if not JOB_ID_RE.fullmatch(job_id):
        abort(404)
    try:
        job = Job.fetch(job_id, connection=current_app.extensions["ghapp.redis"])
        if job.func_name != PUSH_JOB:  # ghapp's own housekeeping jobs are nobody's page
            abort(404)
        described = describe(job)
    except (NoSuchJobError, DeserializationError):
        abort(404)
    return jsonify(described)


def describe(job: Job) -> dict[str, Any]:
    """What a job's page shows: never its arguments' payload key, nor a traceback."""
    status = job.get_status(refresh=False)
    described: dict[str, Any] = {
        "id": job.id,
        "status": status.value if status else None,
        "description": job.description,
        "delivery": job.meta.get("delivery"),
        "enqueued_at": _when(job.enqueued_at),
        "started_at": _when(job.started_at),
        "ended_at": _when(job.ended_at),
    }
    result = job.return_value(refresh=True)
    if result is not None:
        described["result"] = result
    failure = job.latest_result()
    if failure is not None and failure.exc_string:
        # The last line of the traceback: the exception and its message (what to fix).
        described["error"] = _last_exception(failure.exc_string)
    if "report" in job.meta:
        described["report"] = job.meta["report"]
    return described


def _when(moment: Any) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _last_exception(traceback: str) -> str:
    """From a traceback's text, the first line of the exception raised after its last frame
    (what failed and what to do; the processing's output is in the job's report)."""
    lines = traceback.rstrip().splitlines()
    frames = [i for i, line in enumerate(lines) if line.startswith('  File "')]
    index = frames[-1] + 1 if frames else 0
    while index < len(lines) and lines[index].startswith("    "):  # the frame's code
        index += 1
    return lines[index] if index < len(lines) else ""
