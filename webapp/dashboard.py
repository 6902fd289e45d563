"""``/dashboard``: the deliveries and their jobs for an operator, with a button to run one again.
Server-rendered HTML behind HTTP Basic auth (DASHBOARD_PASSWORD); without a password, a 404."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import redis
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from rq import Queue, Worker
from rq.exceptions import DeserializationError, NoSuchJobError
from rq.job import Job
from werkzeug.datastructures import Authorization
from werkzeug.exceptions import HTTPException

from ghapp.core import history, retry
from ghapp.core.settings import Settings

from .jobs import JOB_ID_RE

blueprint = Blueprint(
    "dashboard",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/dashboard/static",
)

REALM = 'Basic realm="ghapp"'
ROWS_DEFAULT = 100
ROWS_MAX = 500
# Processed and failed jobs of the last hour are counted among this many newest deliveries.
HOUR_SCAN = 2_000
CSRF_LIFETIME = 4 * 3600  # seconds a delivery's page may stay open before "Run again" expires
OUTCOMES = (*history.DELIVERY_OUTCOMES, *history.JOB_STATES)
FINAL_JOB_STATES = ("processed", "failed", "superseded")
REPOSITORY_RE = re.compile(r"[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}")
EVENT_RE = re.compile(r"[a-z_]{1,64}")
ENTRY_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,200}")
# Entry fields shown in their own place, or never (the push's arguments stay out of sight).
SHOWN_APART = {"id", "output", "error", "push", "events"}
SECRET_NAME_RE = re.compile(r"token|secret|password|key|payload", re.IGNORECASE)
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


# Access ---------------------------------------------------------------------------------------


def authorized(header: str | None, password: str) -> bool:
    """Whether an Authorization header is HTTP Basic with ``password`` (any user name)."""
    credentials = Authorization.from_header(header)
    if credentials is None or credentials.type != "basic" or credentials.password is None:
        return False
    return hmac.compare_digest(credentials.password.encode(), password.encode())


def _csrf_mac(password: str, entry_id: str, expires: int) -> str:
    key = hmac.new(password.encode(), b"ghapp dashboard: run-again form", hashlib.sha256).digest()
    return hmac.new(key, f"{entry_id}\n{expires}".encode(), hashlib.sha256).hexdigest()


def csrf_token(password: str, entry_id: str, now: float) -> str:
    """The hidden token of one delivery's "Run again" form, valid CSRF_LIFETIME seconds."""
    expires = int(now) + CSRF_LIFETIME
    return f"{expires}.{_csrf_mac(password, entry_id, expires)}"


def csrf_valid(password: str, entry_id: str, token: str, now: float) -> bool:
    """Whether ``token`` was made by ``csrf_token`` for this entry and has not expired."""
    expires_text, _, mac = token.partition(".")
    if not (expires_text.isascii() and expires_text.isdigit()) or len(expires_text) > 12:
        return False
    expires = int(expires_text)
    if not now <= expires <= now + CSRF_LIFETIME:
        return False
    expected = _csrf_mac(password, entry_id, expires)
    return hmac.compare_digest(mac.encode(errors="replace"), expected.encode())


def same_origin(
    origin: str | None, fetch_site: str | None, host: str, public_url: str | None
) -> bool:
    """Whether a form post came from the dashboard's own pages (judged by the browser's Origin
    and Sec-Fetch-Site headers; a client sending neither is judged by the token alone)."""
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    if origin is None:
        return True
    allowed = {host.lower()}
    if public_url:
        allowed.add(urlsplit(public_url).netloc.lower())
    return origin != "null" and urlsplit(origin).netloc.lower() in allowed


# Filters --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    repository: str = ""
    outcome: str = ""
    event: str = ""
    rows: int = ROWS_DEFAULT

    @property
    def active(self) -> bool:
        return bool(self.repository or self.outcome or self.event)


class BadFilter(ValueError):
    """A filter of the deliveries' list the dashboard cannot apply; the message says why."""


def read_filters(args: Mapping[str, str]) -> Filters:
    """The list's filters from the query string; empty values filter nothing."""
    repository = args.get("repository", "").strip()
    outcome = args.get("outcome", "").strip()
    event = args.get("event", "").strip()
    rows_text = args.get("rows", "").strip()
    if repository and not REPOSITORY_RE.fullmatch(repository):
        raise BadFilter(f"repository {repository[:100]!r} is not OWNER/NAME")
    if outcome and outcome not in OUTCOMES:
        raise BadFilter(f"outcome {outcome[:100]!r} is none of: {', '.join(OUTCOMES)}")
    if event and not EVENT_RE.fullmatch(event):
        raise BadFilter(f"event {event[:100]!r} is not an event name such as push or check_run")
    rows = ROWS_DEFAULT
    if rows_text:
        if not (rows_text.isascii() and rows_text.isdigit()) or not 1 <= int(rows_text) <= ROWS_MAX:
            raise BadFilter(f"rows must be a number from 1 to {ROWS_MAX}")
        rows = int(rows_text)
    return Filters(repository, outcome, event, rows)


# What the pages show --------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueSummary:
    depth: int
    oldest_age: float | None  # seconds the oldest queued job has waited
    scheduled: int  # jobs waiting for their next attempt


@dataclass(frozen=True)
class WorkerRow:
    name: str
    host: str
    state: str
    born: datetime | None
    heartbeat: datetime | None
    job_id: str | None
    job_entry: str | None  # the history entry of the current job's delivery
    job_started: datetime | None


@dataclass(frozen=True)
class LiveJob:
    """What RQ itself knows of an entry's job (while RQ keeps it)."""

    id: str
    status: str
    check_run_url: str | None
    conclusion: str | None


def queue_summary(connection: redis.Redis, queue_name: str, now: float) -> QueueSummary:
    queue = Queue(queue_name, connection=connection)
    oldest_age = None
    for job_id in queue.get_job_ids(0, 5):  # the first ones may be gone already
        job = queue.fetch_job(job_id)
        if job is not None and job.enqueued_at is not None:
            oldest_age = max(0.0, now - _utc(job.enqueued_at).timestamp())
            break
    return QueueSummary(queue.count, oldest_age, queue.scheduled_job_registry.count)


def worker_rows(connection: redis.Redis) -> list[WorkerRow]:
    rows = []
    for worker in sorted(Worker.all(connection=connection), key=lambda w: w.name):
        job_id = worker.get_current_job_id()
        job = _fetch_job(connection, job_id) if job_id else None
        rows.append(
            WorkerRow(
                name=worker.name,
                host=worker.hostname or "?",
                state=str(worker.get_state()),
                born=worker.birth_date,
                heartbeat=worker.last_heartbeat,
                job_id=job_id,
                job_entry=_entry_of(job),
                job_started=job.started_at if job is not None else None,
            )
        )
    return rows


def jobs_last_hour(entries: Iterable[Mapping[str, Any]], now: float) -> dict[str, int]:
    """How many jobs were processed and failed in the hour before ``now``."""
    counts = {"processed": 0, "failed": 0}
    for entry in entries:
        state = entry.get("job_state")
        if state in counts and (entry.get("updated_at") or 0) >= now - 3600:
            counts[state] += 1
    return counts


def live_job(connection: redis.Redis, job_id: str | None) -> LiveJob | None:
    job = _fetch_job(connection, job_id) if job_id else None
    if job is None:
        return None
    status = job.get_status(refresh=False)
    report = job.meta.get("report")
    report = report if isinstance(report, dict) else {}
    return LiveJob(
        id=job.id,
        status=status.value if status else "unknown",
        check_run_url=safe_link(report.get("url")),
        conclusion=report.get("conclusion"),
    )


def other_fields(entry: Mapping[str, Any], shown: Iterable[str]) -> list[tuple[str, str]]:
    """Fields of an entry the page has no place for, except any that could hold a secret."""
    skip = {*SHOWN_APART, *shown}
    return [
        (name, str(value))
        for name, value in sorted(entry.items())
        if name not in skip and not SECRET_NAME_RE.search(name) and value not in (None, "")
    ]


def safe_link(url: object) -> str | None:
    """``url`` if it is a web address (a link must never run script), else None."""
    if isinstance(url, str) and urlsplit(url).scheme in ("http", "https"):
        return url
    return None


def when(moment: float | datetime | None) -> str:
    if moment is None:
        return "-"
    if isinstance(moment, datetime):
        moment = _utc(moment).timestamp()
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(moment: float | datetime | None, now: float | None = None) -> str:
    """How long ago ``moment`` was, in the largest unit that fits."""
    if moment is None:
        return "-"
    if isinstance(moment, datetime):
        moment = _utc(moment).timestamp()
    return duration((now if now is not None else time.time()) - moment) + " ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _fetch_job(connection: redis.Redis, job_id: str | None) -> Job | None:
    if not job_id or not JOB_ID_RE.fullmatch(job_id):
        return None
    try:
        return Job.fetch(job_id, connection=connection)
    except (NoSuchJobError, DeserializationError):
        return None


def _entry_of(job: Job | None) -> str | None:
    if job is None or not job.meta.get("delivery"):
        return None
    return history.entry_id(str(job.meta.get("app") or "-"), str(job.meta["delivery"]))


# Pages ----------------------------------------------------------------------------------------


def _settings() -> Settings:
    settings: Settings = current_app.extensions["ghapp.settings"]
    return settings


def _redis() -> redis.Redis:
    connection: redis.Redis = current_app.extensions["ghapp.redis"]
    return connection


def _password() -> str:
    password = _settings().dashboard_password
    if password is None:
        abort(404)
    return password


@blueprint.before_request
def require_password() -> None:
    if not authorized(request.headers.get("Authorization"), _password()):
        abort(401, "The dashboard needs its password (DASHBOARD_PASSWORD); any user name.")


@blueprint.after_request
def protect(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@blueprint.context_processor
def helpers() -> dict[str, Any]:
    return {
        "when": when,
        "ago": ago,
        "duration": duration,
        "now": time.time(),
        "shown": lambda name: not SECRET_NAME_RE.search(name),
    }


@blueprint.errorhandler(HTTPException)
def error_page(exc: HTTPException) -> tuple[str, int, dict[str, str]]:
    code = exc.code or 500
    headers = {"WWW-Authenticate": REALM} if code == 401 else {}
    message = exc.description or exc.name
    return (
        render_template("dashboard_error.html", code=code, title=exc.name, message=message),
        code,
        headers,
    )


@blueprint.errorhandler(redis.RedisError)
def redis_page(exc: redis.RedisError) -> tuple[str, int, dict[str, str]]:
    current_app.logger.warning("dashboard: Redis failed: %s: %s", type(exc).__name__, exc)
    message = "Redis, where the deliveries are kept, did not answer: reload in a moment."
    page = render_template("dashboard_error.html", code=503, title="Unavailable", message=message)
    return page, 503, {"Retry-After": "10"}


@blueprint.get("/dashboard")
def index() -> str:
    try:
        filters = read_filters(request.args)
    except BadFilter as exc:
        abort(400, f"Bad filter: {exc}.")
    connection, settings, now = _redis(), _settings(), time.time()
    entries = history.recent(
        connection,
        filters.rows,
        repository=filters.repository or None,
        outcome=filters.outcome or None,
        event_name=filters.event or None,
    )
    newest = history.recent(connection, HOUR_SCAN, scan=HOUR_SCAN)
    return render_template(
        "dashboard_index.html",
        entries=entries,
        filters=filters,
        outcomes=OUTCOMES,
        queue=queue_summary(connection, settings.queue_name, now),
        workers=worker_rows(connection),
        last_hour=jobs_last_hour(newest, now),
        hour_scan=HOUR_SCAN,
    )


def _entry(entry_id: str) -> dict[str, Any]:
    entry = history.get(_redis(), entry_id) if ENTRY_ID_RE.fullmatch(entry_id) else None
    if entry is None:
        abort(404, f"No delivery {entry_id[:200]!r} in the history (it may have been trimmed).")
    return entry


@blueprint.get("/dashboard/deliveries/<entry_id>")
def delivery(entry_id: str) -> str:
    entry = _entry(entry_id)
    job = live_job(_redis(), entry.get("job_id"))
    job_state = entry.get("job_state")
    running = job is not None and job.status in ("queued", "started", "deferred", "scheduled")
    return render_template(
        "dashboard_delivery.html",
        entry=entry,
        job=job,
        check_run_url=safe_link(entry.get("check_run_url")) or (job and job.check_run_url),
        conclusion=entry.get("conclusion") or (job and job.conclusion),
        others=other_fields(entry, DELIVERY_FIELDS),
        refresh=running and job_state not in FINAL_JOB_STATES,
        token=csrf_token(_password(), entry["id"], time.time()),
    )


# The delivery page's fields in order; the template shows each its own way.
DELIVERY_FIELDS = (
    "delivery",
    "app",
    "received_at",
    "event",
    "action",
    "repository",
    "ref",
    "sha",
    "status",
    "outcome",
    "reason",
    "job_id",
    "job_state",
    "conclusion",
    "seconds_fetch",
    "seconds_processing",
    "check_run_url",
    "updated_at",
)


@blueprint.post("/dashboard/deliveries/<entry_id>/run-again")
def run_again(entry_id: str) -> ResponseReturnValue:
    settings = _settings()
    if not same_origin(
        request.headers.get("Origin"),
        request.headers.get("Sec-Fetch-Site"),
        request.host,
        settings.public_url,
    ):
        abort(403, "Refused: the form was posted from another site.")
    token = request.form.get("csrf_token", "")
    if not csrf_valid(_password(), entry_id, token, time.time()):
        abort(
            403,
            "Refused: the form's token is missing, wrong or expired. "
            "Reload the delivery's page and press Run again there.",
        )
    entry = _entry(entry_id)
    try:
        requeued = retry.queue_again(_redis(), entry, settings)
    except retry.NotRetryable as exc:
        abort(409, f"Cannot run again: {exc}.")
    current_app.logger.info(
        "dashboard: delivery %s run again as %s (job %s)",
        entry.get("delivery"),
        requeued.delivery,
        requeued.job_id,
    )
    new_id = history.entry_id(str(entry.get("app") or "-"), requeued.delivery)
    return redirect(url_for("dashboard.delivery", entry_id=new_id), 303)


@blueprint.route("/dashboard/<path:rest>", methods=["GET", "POST"])
def unknown(rest: str) -> Response:
    abort(404, "No such dashboard page.")
