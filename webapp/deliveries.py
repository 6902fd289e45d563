"""What a webhook delivery means, decided without I/O: signature, body, event, job.

The webhook handler hands headers and raw bytes to ``read_delivery`` and maps its exceptions
to status codes; everything here is plain data in, plain data out.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs

import orjson

from ghapp.core.push_job import PushJob

ZERO_SHA = "0" * 40
# Matched whole (re.fullmatch): "$" would accept a trailing newline.
SHA_RE = re.compile(r"[0-9a-f]{40}")
# A delivery GUID, or any id made of the characters GitHub uses; bounded so it is safe in keys.
DELIVERY_RE = re.compile(r"[A-Za-z0-9_-]{1,100}")
APP_ID_RE = re.compile(r"[0-9]{1,20}")
# An event name (GitHub's are lowercase words joined by "_"); it is logged, so nothing else.
EVENT_RE = re.compile(r"[A-Za-z0-9_.-]{1,100}")
# Characters git refuses in ref names (see git-check-ref-format), plus control characters.
BAD_REF_RE = re.compile(r"(\.\.|[\x00-\x20\x7f~^:?*\[\\]|@\{|//|/\.|\.lock(/|\Z)|\A/|/\Z|\.\Z)")
# Control characters (C0, DEL, C1) and Unicode's line and paragraph separators: in a name they
# would forge log lines, and no GitHub name, ref or URL has one.
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
HANDLED_INFO_EVENTS = ("installation", "installation_repositories")
# Events whose "rerequested" action is GitHub's "Re-run" (a check run) and "Re-run all checks"
# (a check suite): the object in the payload that names the commit.
RERUN_EVENTS = {"check_run": "check_run", "check_suite": "check_suite"}
MAX_ID = 2**63  # ids are stored as Redis integers
# How far ahead of our clock a push's ``pushed_at`` may be: GitHub's clock and ours differ by
# seconds, and a push dated later would keep every push of its branch superseded until then.
MAX_CLOCK_SKEW = 300


class DeliveryError(Exception):
    """A delivery we refuse; ``status`` is the HTTP answer and the message says why."""

    status = 400


class BadSignature(DeliveryError):
    status = 401


class BadRequest(DeliveryError):
    status = 400


class WrongApp(DeliveryError):
    status = 403


class HeaderLookup(Protocol):
    """Request headers by name (a dict, or a server's case-insensitive headers)."""

    def get(self, key: str, /) -> str | None: ...


@dataclass(frozen=True)
class Ignored:
    reason: str


@dataclass(frozen=True)
class InstallationChange:
    """An ``installation`` or ``installation_repositories`` event, to be recorded."""

    installation_id: int
    action: str
    account: str | None
    repositories_added: tuple[str, ...] = ()
    repositories_removed: tuple[str, ...] = ()
    drop_tokens: bool = False


@dataclass(frozen=True)
class Delivery:
    event: str
    delivery: str
    outcome: PushJob | Ignored | InstallationChange
    payload: dict[str, Any] = field(repr=False, default_factory=dict)
    payload_json: bytes = field(repr=False, default=b"{}")
    # Whose ledger it is recorded in (GitHub shares delivery ids between hooks): ``ledger_app``.
    app: str = "-"


def ledger_app(app_id: str | None, target: str | None) -> str:
    """The App a delivery is recorded for: GITHUB_APP_ID, else the App id GitHub's
    ``X-GitHub-Hook-Installation-Target-ID`` names (digits only: it ends up in Redis keys)."""
    if app_id:
        return app_id
    named = (target or "").strip()
    return named if APP_ID_RE.fullmatch(named) else "-"


def signature_for(body: bytes, secret: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body`` signed with ``secret``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, signature: str | None, secrets: Iterable[bytes]) -> None:
    """Raise BadSignature unless ``signature`` is HMAC-SHA256 of the raw body under one secret."""
    if not signature:
        raise BadSignature(
            "X-Hub-Signature-256 is missing: set a webhook secret on the App and the same "
            "value in GITHUB_WEBHOOK_SECRET"
        )
    given = signature.strip().encode("utf-8", errors="replace")
    matched = False
    for secret in secrets:
        # Check every secret, so timing does not tell which one (if any) matched.
        matched |= hmac.compare_digest(signature_for(body, secret).encode(), given)
    if not matched:
        raise BadSignature(
            "X-Hub-Signature-256 does not match: the App's webhook secret differs from "
            "GITHUB_WEBHOOK_SECRET"
        )


def parse_body(body: bytes, content_type: str | None) -> tuple[dict[str, Any], bytes]:
    """The payload as a dict and as JSON bytes, from a JSON or form-encoded (``payload=``) body."""
    mime = (content_type or "application/json").split(";")[0].strip().lower()
    if mime == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(
                body.decode("utf-8"), strict_parsing=True, max_num_fields=10, errors="strict"
            )
        except (UnicodeDecodeError, ValueError):
            raise BadRequest("form-encoded body could not be parsed") from None
        values = fields.get("payload")
        if not values or len(values) != 1:
            raise BadRequest("form-encoded body has no single 'payload' field")
        text = values[0].encode("utf-8")
    elif mime == "application/json" or mime.endswith("+json"):
        text = body
    else:
        raise BadRequest(
            f"unsupported content type {mime!r}: set the webhook's content type to application/json"
        )
    try:
        # GitHub sends UTF-8 JSON: orjson (a third of the stdlib's time on a push) refuses any
        # other encoding, a byte-order mark, lone surrogates, NaN and Infinity.
        payload = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise BadRequest("body is not valid JSON (UTF-8)") from None
    if not isinstance(payload, dict):
        raise BadRequest("payload is not a JSON object")
    return payload, text


def _get(mapping: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def _positive_int(value: Any, what: str) -> int:
    # bool is an int in Python; GitHub never sends one for an id.
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < MAX_ID:
        raise BadRequest(f"{what} is missing or not a positive integer")
    return value


def _text(value: Any, what: str, limit: int) -> str:
    """A string that is valid Unicode (JSON allows lone surrogates; Redis and git do not) and
    has no control character or line separator (it would forge a log line)."""
    if not isinstance(value, str) or not value or len(value) > limit:
        raise BadRequest(f"{what} is missing or not a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{what} is not valid Unicode") from None
    if CONTROL_RE.search(value):
        raise BadRequest(f"{what} contains a control character or line separator")
    return value


def _pushed_at(value: Any, received_at: float) -> int:
    """GitHub's time of the push, at most MAX_CLOCK_SKEW seconds after we received it; 0 if
    it is not a positive integer (bool is an int in Python: refused)."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return 0
    return min(value, int(received_at) + MAX_CLOCK_SKEW)


def installation_id_of(payload: Mapping[str, Any]) -> int:
    return _positive_int(
        _get(payload, "installation", "id"),
        "installation.id (is the webhook configured on a GitHub App?)",
    )


def branch_matches(branch: str, patterns: Iterable[str]) -> bool:
    patterns = tuple(patterns)
    return not patterns or any(fnmatch.fnmatchcase(branch, p) for p in patterns)


def _repository(payload: Mapping[str, Any]) -> tuple[int, str, str]:
    """The payload's repository: id, ``owner/name`` and its http(s) clone URL."""
    repository_id = _positive_int(_get(payload, "repository", "id"), "repository.id")
    full_name = _text(_get(payload, "repository", "full_name"), "repository.full_name", 200)
    if full_name.count("/") != 1:
        raise BadRequest("repository.full_name is not 'owner/name'")
    clone_url = _text(_get(payload, "repository", "clone_url"), "repository.clone_url", 2048)
    if not clone_url.startswith(("https://", "http://")):
        raise BadRequest("repository.clone_url is not an http(s) URL")
    return repository_id, full_name, clone_url


def classify_push(
    payload: Mapping[str, Any],
    delivery: str,
    push_branches: Iterable[str] = (),
    *,
    received_at: float,
) -> PushJob | Ignored:
    """The job for a push, received at ``received_at`` (epoch seconds), or why it is ignored."""
    ref = _text(payload.get("ref"), "push payload 'ref'", 1024)
    if BAD_REF_RE.search(ref):
        raise BadRequest("push payload 'ref' is not a valid git ref name")
    after = payload.get("after")
    if not isinstance(after, str) or not SHA_RE.fullmatch(after):
        raise BadRequest("push payload 'after' is not a 40-character commit sha")
    before = payload.get("before")
    if not isinstance(before, str) or not SHA_RE.fullmatch(before):
        before = ZERO_SHA
    installation_id = installation_id_of(payload)
    if payload.get("deleted") is True or after == ZERO_SHA:
        return Ignored("branch or tag deleted")
    if ref.startswith("refs/tags/"):
        return Ignored("tag push")
    if not ref.startswith("refs/heads/"):
        return Ignored(f"ref {ref} is not a branch")
    branch = ref[len("refs/heads/") :]
    if not branch_matches(branch, push_branches):
        return Ignored(f"branch {branch} does not match PUSH_BRANCHES")
    repository_id, full_name, clone_url = _repository(payload)
    return PushJob(
        pushed_at=_pushed_at(_get(payload, "repository", "pushed_at"), received_at),
        delivery=delivery,
        installation_id=installation_id,
        repository_id=repository_id,
        repository=full_name,
        clone_url=clone_url,
        ref=ref,
        before=before,
        sha=after,
    )


def classify_rerun(
    event: str,
    payload: Mapping[str, Any],
    delivery: str,
    app: str,
    push_branches: Iterable[str] = (),
) -> PushJob | Ignored:
    """A re-run asked for on GitHub ("Re-run" on a check run of App ``app``, "Re-run all checks"
    on its check suite): a job for that commit of that branch; anything else is ignored."""
    kind = RERUN_EVENTS[event]
    action = payload.get("action")
    if action != "rerequested":
        action_name = action if isinstance(action, str) and _is_text(action) else "?"
        return Ignored(f"{event} {action_name[:40]} is not a re-run")
    subject = payload.get(kind)
    if not isinstance(subject, dict):
        raise BadRequest(f"{event} payload has no '{kind}' object")
    owner = _get(subject, "app", "id")
    if app == "-":
        return Ignored(f"{event} re-run: GITHUB_APP_ID is not set, so whose it is is unknown")
    if str(owner) != app or isinstance(owner, bool):
        return Ignored(f"{event} re-run for another App")
    sha = subject.get("head_sha")
    if not isinstance(sha, str) or not SHA_RE.fullmatch(sha):
        raise BadRequest(f"{kind}.head_sha is not a 40-character commit sha")
    suite = subject if kind == "check_suite" else subject.get("check_suite")
    branch = _get(suite, "head_branch")
    if branch is None:
        return Ignored(f"{event} re-run names no branch (head_branch is null)")
    branch = _text(branch, f"{kind} head_branch", 1000)
    ref = f"refs/heads/{branch}"
    if BAD_REF_RE.search(ref):
        raise BadRequest(f"{kind} head_branch is not a valid git branch name")
    if not branch_matches(branch, push_branches):
        return Ignored(f"branch {branch} does not match PUSH_BRANCHES")
    installation_id = installation_id_of(payload)
    repository_id, full_name, clone_url = _repository(payload)
    return PushJob(
        delivery=delivery,
        installation_id=installation_id,
        repository_id=repository_id,
        repository=full_name,
        clone_url=clone_url,
        ref=ref,
        before=ZERO_SHA,
        sha=sha,
        event=event,
    )


def _names(items: Any) -> tuple[str, ...]:
    if not isinstance(items, list):
        return ()
    return tuple(
        item["full_name"]
        for item in items
        if isinstance(item, dict) and _is_text(item.get("full_name"))
    )


def _is_text(value: Any) -> bool:
    try:
        _text(value, "", 1024)
    except BadRequest:
        return False
    return True


def classify_installation(event: str, payload: Mapping[str, Any]) -> InstallationChange:
    action = _text(payload.get("action"), f"{event} payload 'action'", 100)
    account = _get(payload, "installation", "account", "login")
    removed: tuple[str, ...] = ()
    if event == "installation":
        added = _names(payload.get("repositories"))
    else:
        added = _names(payload.get("repositories_added"))
        removed = _names(payload.get("repositories_removed"))
    return InstallationChange(
        installation_id=installation_id_of(payload),
        action=action,
        account=account if _is_text(account) else None,
        repositories_added=added,
        repositories_removed=removed,
        drop_tokens=event == "installation" and action in ("deleted", "suspend"),
    )


def read_delivery(
    headers: HeaderLookup,
    body: bytes,
    *,
    secrets: Iterable[bytes],
    app_id: str | None = None,
    push_branches: Iterable[str] = (),
    received_at: float | None = None,
) -> Delivery:
    """Verify and interpret one webhook delivery, received at ``received_at`` (epoch seconds;
    default: now); raise a DeliveryError subclass to refuse it."""
    verify_signature(body, headers.get("X-Hub-Signature-256"), secrets)
    target = headers.get("X-GitHub-Hook-Installation-Target-ID")
    if app_id and target and target.strip() != app_id:
        raise WrongApp(
            f"this delivery is for App {target.strip()!r}, not GITHUB_APP_ID {app_id!r}: "
            "check the webhook URL and GITHUB_APP_ID"
        )
    event = (headers.get("X-GitHub-Event") or "").strip()
    if not event:
        raise BadRequest("X-GitHub-Event header is missing")
    if not EVENT_RE.fullmatch(event):
        raise BadRequest("X-GitHub-Event header is malformed: expected an event name like push")
    delivery = (headers.get("X-GitHub-Delivery") or "").strip()
    if not DELIVERY_RE.fullmatch(delivery):
        raise BadRequest("X-GitHub-Delivery header is missing or malformed")
    payload, payload_json = parse_body(body, headers.get("Content-Type"))
    outcome: PushJob | Ignored | InstallationChange
    if event == "push":
        if received_at is None:
            received_at = time.time()
        outcome = classify_push(payload, delivery, push_branches, received_at=received_at)
    elif event in HANDLED_INFO_EVENTS:
        outcome = classify_installation(event, payload)
    elif event in RERUN_EVENTS:
        app = ledger_app(app_id, target)
        outcome = classify_rerun(event, payload, delivery, app, push_branches)
    elif event == "ping":
        outcome = Ignored("ping")
    else:
        outcome = Ignored(f"event {event} is not handled")
    return Delivery(
        event=event,
        delivery=delivery,
        outcome=outcome,
        payload=payload,
        payload_json=payload_json,
        app=ledger_app(app_id, target),
    )
