"""The Redis keys ghapp owns, named in one place so the web and worker processes agree."""

from __future__ import annotations

PREFIX = "ghapp"
# GitHub lets a delivery be redelivered for 3 days (7 on Enterprise Server): remember longer.
LEDGER_TTL = 8 * 24 * 3600
# The payload waits for its job; a job still queued after this long has bigger problems.
PAYLOAD_TTL = 8 * 24 * 3600
# GitHub's clock minus ours, learnt from a refused JWT, shared by every worker.
CLOCK_OFFSET = f"{PREFIX}:clock-offset"


def delivery(app: str, delivery_id: str) -> str:
    """The ledger entry of one delivery (GitHub shares delivery ids across hooks: key by App)."""
    return f"{PREFIX}:delivery:{app}:{delivery_id}"


def payload(app: str, delivery_id: str) -> str:
    return f"{PREFIX}:payload:{app}:{delivery_id}"


def latest_push(repository_id: int, ref: str) -> str:
    """The newest push of one branch, ``"<pushed_at> <before>:<after>:<delivery>"``: older ones
    are superseded. Pushes that tie (the same ``pushed_at``, neither the other's parent) are all
    newest: one ``<before>:<after>:<delivery>`` each, or ``*`` when too many to list."""
    return f"{PREFIX}:latest:{repository_id}:{ref}"


def push(app: str, repository_id: int, ref: str, before: str, after: str) -> str:
    """One push accepted, whatever its delivery id (a signed body replayed under another id is
    a duplicate): the ref last, so no ref can make two pushes' keys alike."""
    return f"{PREFIX}:push:{app}:{repository_id}:{before}:{after}:{ref}"


def branch_lock(repository_id: int, ref: str) -> str:
    return f"{PREFIX}:branch-lock:{repository_id}:{ref}"


def installation(installation_id: int) -> str:
    return f"{PREFIX}:installation:{installation_id}"


def installation_repositories(installation_id: int) -> str:
    return f"{PREFIX}:installation:{installation_id}:repositories"


def tokens(installation_id: int) -> str:
    """The hash of one installation's cached tokens (a field per scope): one DEL drops them all."""
    return f"{PREFIX}:tokens:{installation_id}"


def token_lock(installation_id: int, scope: str) -> str:
    return f"{PREFIX}:token-lock:{installation_id}:{scope}"


# What was reported on GitHub for one job, kept while GitHub may send a re-run for it.
REPORT_TTL = 8 * 24 * 3600


def report(repository_id: int, delivery_id: str) -> str:
    """The check run (or status) reporting one delivery's job: its id, and whether completed.
    A retried or rescheduled job finds its check run here instead of creating another."""
    return f"{PREFIX}:report:{repository_id}:{delivery_id}"


def report_fallback(installation_id: int) -> str:
    """How an installation's reports go while the App lacks a permission: ``statuses`` (no
    Checks permission) or ``none`` (neither); set for a while, then tried again."""
    return f"{PREFIX}:report-fallback:{installation_id}"


# The delivery history (ghapp/core/history.py): entry ids newest last, by time received.
HISTORY_INDEX = f"{PREFIX}:history"
HISTORY_REFUSED = f"{PREFIX}:history:refused"


def history_entry(entry_id: str) -> str:
    """One delivery's entry: what it was, how it was answered, what became of its jobs."""
    return f"{PREFIX}:history:entry:{entry_id}"


def history_events(entry_id: str) -> str:
    return f"{PREFIX}:history:events:{entry_id}"


# Counters and histograms every process adds to (ghapp/core/metrics.py).
METRICS_COUNTERS = f"{PREFIX}:metrics:counters"
METRICS_HISTOGRAMS = f"{PREFIX}:metrics:histograms"

REDELIVERY_CURSOR = f"{PREFIX}:redelivery:cursor"
REDELIVERY_LOCK = f"{PREFIX}:redelivery:lock"


def redelivery_asked(guid: str) -> str:
    """Set once we asked GitHub to redeliver ``guid``: each failed delivery is asked for once."""
    return f"{PREFIX}:redelivery:asked:{guid}"
