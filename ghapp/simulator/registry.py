"""Thread-safe in-memory state of the simulator: Apps, installations, repositories, tokens,
requests, webhook deliveries, manifest codes and the simulated clock."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import replace

from ghapp.simulator.clock import SimClock
from ghapp.simulator.models import (
    CheckRun,
    CheckSuite,
    CommitStatus,
    HookDelivery,
    InjectedFailure,
    Installation,
    ManifestCode,
    MintRecord,
    Repository,
    RequestRecord,
    SimulatedApp,
)

FIRST_REPOSITORY_ID = 1000
FIRST_ACCOUNT_ID = 9000
FIRST_DELIVERY_ID = 50000
FIRST_CHECK_RUN_ID = 1_000_000
FIRST_CHECK_SUITE_ID = 800_000_000  # far from the check run ids: one is never taken for the other
FIRST_STATUS_ID = 30_000_000
FIRST_APP_ID = 900_001  # Apps made at runtime; the App given at construction keeps its own id
FIRST_INSTALLATION_ID = 60_000_001  # installations made on the install page
FIRST_HOOK_ID = 470_001
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
        self._apps: dict[str, SimulatedApp] = {}
        self._next_app_id = FIRST_APP_ID
        self._next_installation_id = FIRST_INSTALLATION_ID
        self._manifest_codes: dict[str, ManifestCode] = {}
        self._check_suites: dict[int, CheckSuite] = {}
        self._check_runs: dict[int, CheckRun] = {}
        self._statuses: list[CommitStatus] = []
        self._next_check_suite_id = FIRST_CHECK_SUITE_ID
        self._next_check_run_id = FIRST_CHECK_RUN_ID
        self._next_status_id = FIRST_STATUS_ID

    # Apps --------------------------------------------------------------------------------

    def add_app(self, build: Callable[[str, int], SimulatedApp]) -> SimulatedApp:
        """Build an App with the next free App id and hook id (``build(app_id, hook_id)``) and
        store it; its id, name and slug must be new."""
        with self._lock:
            while str(self._next_app_id) in self._apps:
                self._next_app_id += 1
            app = build(str(self._next_app_id), FIRST_HOOK_ID + len(self._apps))
            self._store_new_app_locked(app)
            if app.id == str(self._next_app_id):
                self._next_app_id += 1
            return app

    def app(self, app_id_or_slug: str | int) -> SimulatedApp | None:
        """The App with this id or slug (slugs compare case-insensitively)."""
        key = str(app_id_or_slug)
        with self._lock:
            if key in self._apps:
                return self._apps[key]
            return next((a for a in self._apps.values() if a.slug == key.lower()), None)

    def apps(self) -> list[SimulatedApp]:
        """Every App, the first registered first."""
        with self._lock:
            return list(self._apps.values())

    def first_app(self) -> SimulatedApp | None:
        with self._lock:
            return next(iter(self._apps.values()), None)

    def update_app(self, app_id: str, **changes: object) -> SimulatedApp:
        with self._lock:
            if app_id not in self._apps:
                raise KeyError(f"no App {app_id}")
            app = replace(self._apps[app_id], **changes)  # type: ignore[arg-type]
            self._apps[app_id] = app
            return app

    def name_taken(self, name: str, slug: str) -> bool:
        with self._lock:
            return any(
                a.name.lower() == name.lower() or a.slug == slug for a in self._apps.values()
            )

    @property
    def app_permissions(self) -> dict[str, str]:
        """The first App's permissions (the defaults while there is no App)."""
        app = self.first_app()
        return dict(app.permissions) if app is not None else dict(DEFAULT_APP_PERMISSIONS)

    @app_permissions.setter
    def app_permissions(self, permissions: dict[str, str]) -> None:
        app = self.first_app()
        if app is None:
            raise RuntimeError("the simulator has no App yet")
        self.update_app(app.id, permissions=dict(permissions))

    # Manifest codes ------------------------------------------------------------------------

    def add_manifest_code(self, code: ManifestCode) -> None:
        with self._lock:
            self._manifest_codes[code.code] = code

    def redeem_manifest_code(self, code: str, lifetime: float) -> ManifestCode | None:
        """The code's record if it was issued less than ``lifetime`` seconds ago; a code is
        redeemed once (afterwards, and once expired, None)."""
        with self._lock:
            record = self._manifest_codes.pop(code, None)
            if record is None or self.clock.now() - record.issued_at >= lifetime:
                return None
            return record

    # Installations -----------------------------------------------------------------------

    def add_installation(
        self,
        installation_id: int | None,
        account: str,
        suspended: bool,
        app_id: str,
        repository_ids: frozenset[int] | None = None,
    ) -> Installation:
        """Store a new installation of App ``app_id``; ``installation_id`` None takes the
        next free one."""
        with self._lock:
            if app_id not in self._apps:
                raise ValueError(f"no App {app_id} to install")
            if installation_id is None:
                while self._next_installation_id in self._installations:
                    self._next_installation_id += 1
                installation_id = self._next_installation_id
            if installation_id in self._installations:
                raise ValueError(f"installation {installation_id} already exists")
            installation = Installation(
                installation_id,
                account,
                suspended,
                app_id=app_id,
                repository_ids=repository_ids,
                created_at=self.clock.now(),
            )
            self._installations[installation_id] = installation
            self._account_id_locked(account)
            return installation

    def set_installation_repositories(
        self, installation_id: int, repository_ids: frozenset[int]
    ) -> Installation:
        with self._lock:
            current = self._require_installation_locked(installation_id)
            updated = replace(current, repository_ids=repository_ids)
            self._installations[installation_id] = updated
            return updated

    def installations(self, app_id: str | None = None) -> list[Installation]:
        """Every installation (of App ``app_id`` if given), oldest id first."""
        with self._lock:
            return [
                i
                for _, i in sorted(self._installations.items())
                if app_id is None or i.app_id == app_id
            ]

    def installations_of_repository(self, repo: Repository) -> list[Installation]:
        """The installations (of any App) that can see ``repo``, oldest id first."""
        with self._lock:
            return [
                i for _, i in sorted(self._installations.items()) if _installation_covers(i, repo)
            ]

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

    def repositories(self, owner: str | None = None) -> list[Repository]:
        """Every repository (of ``owner`` if given), oldest first."""
        with self._lock:
            return [
                r
                for r in sorted(self._repositories.values(), key=lambda r: r.id)
                if owner is None or r.owner.lower() == owner.lower()
            ]

    def repositories_of(self, installation_id: int) -> list[Repository]:
        """The repositories the installation can see (none if it does not exist)."""
        with self._lock:
            installation = self._installations.get(installation_id)
            if installation is None:
                return []
            return [
                r
                for r in sorted(self._repositories.values(), key=lambda r: r.id)
                if _installation_covers(installation, r)
            ]

    def installation_covers(self, installation_id: int, repo: Repository) -> bool:
        with self._lock:
            installation = self._installations.get(installation_id)
            return installation is not None and _installation_covers(installation, repo)

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

    def deliveries(self, app_id: str | None = None) -> list[HookDelivery]:
        """Every delivery attempt (to App ``app_id``'s hook if given), oldest first."""
        with self._lock:
            return [d for d in self._deliveries if app_id is None or d.app_id == app_id]

    def delivery(self, delivery_id: int) -> HookDelivery | None:
        with self._lock:
            return next((d for d in self._deliveries if d.id == delivery_id), None)

    def record_redelivery_request(self, delivery_id: int) -> None:
        with self._lock:
            self._redelivery_requests.append(delivery_id)

    def redelivery_requests(self) -> list[int]:
        with self._lock:
            return list(self._redelivery_requests)

    # Checks and commit statuses ---------------------------------------------------------

    def find_check_suite(
        self, repository_id: int, head_sha: str, head_branch: str | None = None
    ) -> CheckSuite | None:
        """The App's suite for ``head_sha`` in the repository, if any; ``head_branch``, if
        given, renames its branch first."""
        with self._lock:
            suite = self._find_suite_locked(repository_id, head_sha)
            if suite is None:
                return None
            if head_branch is not None:
                suite.head_branch = head_branch
            return copy.deepcopy(suite)

    def check_suite_for(
        self, repository_id: int, head_sha: str, build: Callable[[int], CheckSuite]
    ) -> CheckSuite:
        """The App's suite for ``head_sha`` in the repository, built with the next suite id
        if there is none yet (GitHub keeps one suite per App and head sha)."""
        with self._lock:
            suite = self._find_suite_locked(repository_id, head_sha)
            if suite is None:
                suite = build(self._next_check_suite_id)
                self._check_suites[suite.id] = suite
                self._next_check_suite_id += 1
            return copy.deepcopy(suite)

    def check_suite(self, suite_id: int) -> CheckSuite | None:
        with self._lock:
            suite = self._check_suites.get(suite_id)
            return copy.deepcopy(suite) if suite is not None else None

    def add_check_run(self, build: Callable[[int], CheckRun]) -> CheckRun:
        """Reserve the next check run id, build the run with it and store it."""
        with self._lock:
            run = build(self._next_check_run_id)
            self._check_runs[run.id] = run
            self._next_check_run_id += 1
            self._touch_suite_locked(run.check_suite_id)
            return copy.deepcopy(run)

    def update_check_run(
        self, repository_id: int, run_id: int, change: Callable[[CheckRun], None]
    ) -> CheckRun | None:
        """Apply ``change`` to the stored run (None if the repository has no such run)."""
        with self._lock:
            run = self._check_runs.get(run_id)
            if run is None or run.repository_id != repository_id:
                return None
            change(run)
            self._touch_suite_locked(run.check_suite_id)
            return copy.deepcopy(run)

    def check_run(self, repository_id: int, run_id: int) -> CheckRun | None:
        with self._lock:
            run = self._check_runs.get(run_id)
            if run is None or run.repository_id != repository_id:
                return None
            return copy.deepcopy(run)

    def check_runs(self, repository_id: int, head_sha: str | None = None) -> list[CheckRun]:
        """The repository's check runs (of ``head_sha`` if given), oldest first."""
        with self._lock:
            return [
                copy.deepcopy(run)
                for run in sorted(self._check_runs.values(), key=lambda r: r.id)
                if run.repository_id == repository_id
                and (head_sha is None or run.head_sha == head_sha)
            ]

    def add_status(self, build: Callable[[int], CommitStatus]) -> CommitStatus:
        with self._lock:
            status = build(self._next_status_id)
            self._statuses.append(status)
            self._next_status_id += 1
            return status

    def statuses(self, repository_id: int, sha: str) -> list[CommitStatus]:
        """The statuses posted to ``sha`` in the repository, oldest first."""
        with self._lock:
            return [s for s in self._statuses if s.repository_id == repository_id and s.sha == sha]

    # Internals ---------------------------------------------------------------------------

    def _store_new_app_locked(self, app: SimulatedApp) -> None:
        if app.id in self._apps:
            raise ValueError(f"App {app.id} already exists")
        if any(
            a.slug == app.slug or a.name.lower() == app.name.lower() for a in self._apps.values()
        ):
            raise ValueError(f"an App named {app.name!r} already exists")
        self._apps[app.id] = app

    def _account_id_locked(self, login: str) -> int:
        key = login.lower()
        if key not in self._account_ids:
            self._account_ids[key] = FIRST_ACCOUNT_ID + len(self._account_ids)
        return self._account_ids[key]

    def _find_suite_locked(self, repository_id: int, head_sha: str) -> CheckSuite | None:
        return next(
            (
                s
                for s in self._check_suites.values()
                if s.repository_id == repository_id and s.head_sha == head_sha
            ),
            None,
        )

    def _touch_suite_locked(self, suite_id: int) -> None:
        suite = self._check_suites.get(suite_id)
        if suite is not None:
            suite.updated_at = self.clock.now()

    def _require_installation_locked(self, installation_id: int) -> Installation:
        try:
            return self._installations[installation_id]
        except KeyError:
            raise KeyError(f"no installation {installation_id}") from None


def _installation_covers(installation: Installation, repo: Repository) -> bool:
    if installation.repository_ids is None:
        return repo.installation_id == installation.id
    return repo.id in installation.repository_ids
