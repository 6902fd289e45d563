"""Thread-safe in-memory state of the simulator: installations, repositories, tokens, requests,
webhook deliveries, and the simulated clock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

from ghapp.simulator.clock import SimClock
from ghapp.simulator.models import (
    HookDelivery,
    InjectedFailure,
    Installation,
    MintRecord,
    Repository,
    RequestRecord,
)

FIRST_REPOSITORY_ID = 1000
FIRST_ACCOUNT_ID = 9000
FIRST_DELIVERY_ID = 50000
# What the simulated App was granted when installed; tokens get at most these.
DEFAULT_APP_PERMISSIONS = {
    "contents": "read",
    "checks": "write",
    "statuses": "write",
    "metadata": "read",
}


class Registry:
    """Everything the HTTP handlers and the Python API share, behind one lock."""

    def __init__(self, token_lifetime: int = 3600) -> None:
        self.token_lifetime = token_lifetime
        self.clock = SimClock()
        self._lock = threading.Lock()
        self._installations: dict[int, Installation] = {}
        self._account_ids: dict[str, int] = {}
        self._repositories: dict[str, Repository] = {}
        self._tokens: dict[str, MintRecord] = {}
        self._mints: list[MintRecord] = []
        self._requests: list[RequestRecord] = []
        self._failures: list[InjectedFailure] = []
        self._next_repository_id = FIRST_REPOSITORY_ID
        self._deliveries: list[HookDelivery] = []
        self._redelivery_requests: list[int] = []
        self._next_delivery_id = FIRST_DELIVERY_ID
        self._app_permissions = dict(DEFAULT_APP_PERMISSIONS)

    # The App ------------------------------------------------------------------------------

    @property
    def app_permissions(self) -> dict[str, str]:
        with self._lock:
            return dict(self._app_permissions)

    @app_permissions.setter
    def app_permissions(self, permissions: dict[str, str]) -> None:
        with self._lock:
            self._app_permissions = dict(permissions)

    # Installations -----------------------------------------------------------------------

    def add_installation(self, installation_id: int, account: str, suspended: bool) -> None:
        with self._lock:
            if installation_id in self._installations:
                raise ValueError(f"installation {installation_id} already exists")
            self._installations[installation_id] = Installation(installation_id, account, suspended)
            self._account_id_locked(account)

    def set_suspended(self, installation_id: int, suspended: bool) -> None:
        with self._lock:
            current = self._require_installation_locked(installation_id)
            self._installations[installation_id] = replace(current, suspended=suspended)

    def delete_installation(self, installation_id: int) -> None:
        with self._lock:
            self._require_installation_locked(installation_id)
            del self._installations[installation_id]

    def installation(self, installation_id: int) -> Installation | None:
        with self._lock:
            return self._installations.get(installation_id)

    def account_id(self, login: str) -> int:
        """A stable numeric id for an account login (assigned on first use)."""
        with self._lock:
            return self._account_id_locked(login)

    # Repositories ------------------------------------------------------------------------

    def add_repository(self, build: Callable[[int], Repository]) -> Repository:
        """Reserve the next repository id, build the record with it and store it."""
        with self._lock:
            repo = build(self._next_repository_id)
            key = repo.full_name.lower()
            if key in self._repositories:
                raise ValueError(f"repository {repo.full_name} already exists")
            self._repositories[key] = repo
            self._next_repository_id += 1
            self._account_id_locked(repo.owner)
            return repo

    def repository(self, full_name: str) -> Repository | None:
        with self._lock:
            return self._repositories.get(full_name.lower())

    def repositories_of(self, installation_id: int) -> list[Repository]:
        with self._lock:
            return [r for r in self._repositories.values() if r.installation_id == installation_id]

    # Tokens ------------------------------------------------------------------------------

    def record_mint(self, record: MintRecord) -> None:
        with self._lock:
            self._tokens[record.token] = record
            self._mints.append(record)

    def mint_record(self, token: str) -> MintRecord | None:
        with self._lock:
            return self._tokens.get(token)

    def mints(self) -> list[MintRecord]:
        with self._lock:
            return list(self._mints)

    # Requests and injected failures ------------------------------------------------------

    def record_request(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def add_failure(self, failure: InjectedFailure) -> None:
        with self._lock:
            self._failures.append(failure)

    def take_failure(self, method: str, path: str) -> InjectedFailure | None:
        """Consume one use of the first injected failure matching this request, if any."""
        with self._lock:
            for failure in self._failures:
                if failure.matches(method, path):
                    failure.remaining -= 1
                    if failure.remaining <= 0:
                        self._failures.remove(failure)
                    return failure
            return None

    # Webhook deliveries ------------------------------------------------------------------

    def add_delivery(self, build: Callable[[int], HookDelivery]) -> HookDelivery:
        """Reserve the next delivery id, build the record with it and store it."""
        with self._lock:
            delivery = build(self._next_delivery_id)
            self._deliveries.append(delivery)
            self._next_delivery_id += 1
            return delivery

    def deliveries(self) -> list[HookDelivery]:
        with self._lock:
            return list(self._deliveries)

    def delivery(self, delivery_id: int) -> HookDelivery | None:
        with self._lock:
            return next((d for d in self._deliveries if d.id == delivery_id), None)

    def record_redelivery_request(self, delivery_id: int) -> None:
        with self._lock:
            self._redelivery_requests.append(delivery_id)

    def redelivery_requests(self) -> list[int]:
        with self._lock:
            return list(self._redelivery_requests)

    # Internals ---------------------------------------------------------------------------

    def _account_id_locked(self, login: str) -> int:
        key = login.lower()
        if key not in self._account_ids:
            self._account_ids[key] = FIRST_ACCOUNT_ID + len(self._account_ids)
        return self._account_ids[key]

    def _require_installation_locked(self, installation_id: int) -> Installation:
        try:
            return self._installations[installation_id]
        except KeyError:
            raise KeyError(f"no installation {installation_id}") from None
