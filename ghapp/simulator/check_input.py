"""Validation of check run and commit status request bodies, with GitHub's 422 answers.

GitHub checks a body first against the endpoint's JSON schema ("Invalid request." messages)
and then against its model ("Validation Failed" with ``errors``); both kinds are mimicked.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from ghapp.simulator.responses import error_response, validation_failed

STATUSES = ("queued", "in_progress", "completed")
# "stale" is a conclusion only GitHub itself sets; an App giving it is refused.
CONCLUSIONS = (
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "success",
    "skipped",
    "timed_out",
)
ANNOTATION_LEVELS = ("notice", "warning", "failure")
STATUS_STATES = ("error", "failure", "pending", "success")
MAX_OUTPUT_CHARS = 65535  # output.summary and output.text (GitHub's REST reference)
# output.title: GitHub documents no maximum. 255 is the documented maximum of an annotation's
# title and what GitHub's string columns usually hold; the simulator refuses longer titles so a
# caller that might send one finds out here rather than on GitHub.
MAX_OUTPUT_TITLE_CHARS = 255
MAX_ANNOTATIONS = 50  # per request; more need further PATCHes, which append
MAX_ANNOTATION_TITLE_CHARS = 255
MAX_ANNOTATION_BYTES = 64 * 1024  # annotation message and raw_details: "64 KB"
MAX_STATUS_DESCRIPTION = 140  # GitHub cuts a commit status's description to this
INVALID = "Invalid request.\n\n"
_DATE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)$")


class Invalid(Exception):
    """The request cannot be served; ``response`` is GitHub's answer."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


@dataclass
class CheckRunInput:
    """The validated fields of a create or update body (only those given)."""

    fields: dict[str, Any]
    output: dict[str, str] | None = None
    annotations: list[dict[str, Any]] = field(default_factory=list)


def json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.get_data(cache=False) or b"null")
    except ValueError:
        raise Invalid(error_response(400, "Problems parsing JSON")) from None
    if not isinstance(body, dict):
        raise Invalid(error_response(400, "Problems parsing JSON"))
    return body


def check_run_input(body: dict[str, Any], creating: bool) -> CheckRunInput:
    """Check a ``POST .../check-runs`` (``creating``) or ``PATCH .../check-runs/{id}`` body."""
    if creating:
        _require(body, ("name", "head_sha"))
    fields: dict[str, Any] = {}
    for name in ("name", "head_sha", "details_url", "external_id"):
        if name in body and (creating or name != "head_sha"):
            fields[name] = _string(body[name], name)
    if "status" in body:
        fields["status"] = _member(body["status"], "status", STATUSES)
    if "conclusion" in body:
        fields["conclusion"] = _member(body["conclusion"], "conclusion", CONCLUSIONS)
    for name in ("started_at", "completed_at"):
        if name in body:
            fields[name] = iso_timestamp(body[name], name)
    parsed = CheckRunInput(fields)
    if "output" in body:
        parsed.output, parsed.annotations = _output(body["output"], creating)
    return parsed


def status_input(body: dict[str, Any]) -> dict[str, Any]:
    """Check a ``POST .../statuses/{sha}`` body; the description comes back cut to 140."""
    _require(body, ("state",))
    if body["state"] not in STATUS_STATES:
        raise Invalid(
            validation_failed("Status", "state", "custom", "state is not included in the list")
        )
    values: dict[str, Any] = {"state": body["state"], "context": "default"}
    for name in ("target_url", "description", "context"):
        value = body.get(name)
        if value is not None:
            values[name] = _string(value, name)
    if values.get("description") is not None:
        values["description"] = values["description"][:MAX_STATUS_DESCRIPTION]
    return values


def iso_timestamp(value: Any, name: str) -> str:
    """``value`` (ISO 8601 with a zone) as GitHub shows times: UTC, ``YYYY-MM-DDTHH:MM:SSZ``."""
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        raise Invalid(_schema_error(f"For 'properties/{name}', {_show(value)} is not a date-time."))
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(
            _schema_error(f"For 'properties/{name}', {_show(value)} is not a date-time.")
        ) from None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _output(value: Any, creating: bool) -> tuple[dict[str, str], list[dict[str, Any]]]:
    if not isinstance(value, dict):
        raise Invalid(_schema_error(f"For 'properties/output', {_show(value)} is not an object."))
    # Creating needs title and summary; GitHub's update schema needs only the summary.
    _require(value, ("title", "summary") if creating else ("summary",))
    output: dict[str, str] = {}
    for name in ("title", "summary", "text"):
        if name in value:
            output[name] = _string(value[name], name)
    if "title" in output:
        _max_chars(output["title"], MAX_OUTPUT_TITLE_CHARS)
    for name in ("summary", "text"):
        if name in output:
            _max_chars(output[name], MAX_OUTPUT_CHARS)
            if len(output[name].encode()) > MAX_OUTPUT_CHARS:
                raise Invalid(
                    validation_failed(
                        "CheckRun",
                        name,
                        "custom",
                        f"{name} exceeds a maximum bytesize of {MAX_OUTPUT_CHARS}",
                    )
                )
    annotations = value.get("annotations", [])
    if not isinstance(annotations, list):
        raise Invalid(
            _schema_error(f"For 'properties/annotations', {_show(annotations)} is not an array.")
        )
    if len(annotations) > MAX_ANNOTATIONS:
        raise Invalid(
            _schema_error(
                f"No more than {MAX_ANNOTATIONS} items are allowed; "
                f"{len(annotations)} were supplied."
            )
        )
    missing = [_missing(a, _ANNOTATION_REQUIRED) for a in annotations if isinstance(a, dict)]
    if any(missing):
        raise Invalid(_schema_error("\n".join(m for m in missing if m)))
    return output, [_annotation(a) for a in annotations]


_ANNOTATION_REQUIRED = ("path", "start_line", "end_line", "annotation_level", "message")


def _annotation(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(_schema_error(f"For 'items', {_show(value)} is not an object."))
    annotation: dict[str, Any] = {
        "path": _string(value["path"], "path"),
        "start_line": _integer(value["start_line"], "start_line"),
        "end_line": _integer(value["end_line"], "end_line"),
        "start_column": None,
        "end_column": None,
        "annotation_level": _member(
            value["annotation_level"], "annotation_level", ANNOTATION_LEVELS
        ),
        "message": _string(value["message"], "message"),
        "title": None,
        "raw_details": None,
    }
    for name in ("start_column", "end_column"):
        if value.get(name) is not None:
            annotation[name] = _integer(value[name], name)
    for name in ("title", "raw_details"):
        if value.get(name) is not None:
            annotation[name] = _string(value[name], name)
    if annotation["title"] is not None:
        _max_chars(annotation["title"], MAX_ANNOTATION_TITLE_CHARS)
    lines = (annotation["start_line"], annotation["end_line"])
    columns = [c for c in (annotation["start_column"], annotation["end_column"]) if c is not None]
    too_big = any(
        annotation[name] is not None and len(annotation[name].encode()) > MAX_ANNOTATION_BYTES
        for name in ("message", "raw_details")
    )
    # Columns only on one line (GitHub: "Omit this parameter if start_line and end_line have
    # different values"); lines and columns count from 1.
    if (
        min(lines) < 1
        or lines[0] > lines[1]
        or (columns and lines[0] != lines[1])
        or any(c < 1 for c in columns)
        or too_big
    ):
        raise Invalid(validation_failed("CheckRun", "annotations", "invalid"))
    return annotation


def _require(body: dict[str, Any], names: tuple[str, ...]) -> None:
    message = _missing(body, names)
    if message:
        raise Invalid(_schema_error(message))


def _missing(body: dict[str, Any], names: tuple[str, ...]) -> str:
    """GitHub's words for absent required fields: ``"a", "b" weren't supplied.``"""
    absent = sorted(n for n in names if n not in body)
    if not absent:
        return ""
    shown = ", ".join(f'"{n}"' for n in absent)
    return f"{shown} {'wasn' if len(absent) == 1 else 'weren'}'t supplied."


def _string(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise Invalid(_schema_error(f"For 'properties/{name}', {_show(value)} is not a string."))
    return value


def _integer(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise Invalid(_schema_error(f"For 'properties/{name}', {_show(value)} is not an integer."))
    return value


def _member(value: Any, name: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        members = _show(list(allowed))
        raise Invalid(
            _schema_error(f"For 'properties/{name}', {_show(value)} is not a member of {members}.")
        )
    return str(value)


def _max_chars(value: str, limit: int) -> None:
    if len(value) > limit:
        raise Invalid(
            _schema_error(f"Only {limit} characters are allowed; {len(value)} were supplied.")
        )


def _schema_error(detail: str) -> Response:
    return error_response(422, INVALID + detail)


def _show(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "))
