"""``GitHubSimulator``: a loopback HTTP server standing in for GitHub's API and git hosting."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from werkzeug.http import http_date
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from ghapp.simulator import repositories
from ghapp.simulator.app_jwt import AppJwtVerifier, load_app_public_key
from ghapp.simulator.clock import SimClock
from ghapp.simulator.control import control_routes
from ghapp.simulator.git_http import GitHttpBackend
from ghapp.simulator.installation_auth import LEVELS
from ghapp.simulator.manifests import ManifestRejected, manifest_from_document, register_app
from ghapp.simulator.models import (
    CheckRun,
    HookDelivery,
    InjectedFailure,
    Installation,
    MintRecord,
    Repository,
    RequestRecord,
    SimulatedApp,
)
from ghapp.simulator.payloads import APP_CREATED_AT, APP_NAME, APP_SLUG, Links, push_event
from ghapp.simulator.registry import DEFAULT_APP_PERMISSIONS, Registry
from ghapp.simulator.repositories import AUTHOR_LOGIN, ZERO_SHA
from ghapp.simulator.statuses import status_json
from ghapp.simulator.webhooks import WebhookSender
from ghapp.simulator.wsgi import API_PREFIX, SimulatorApp

logger = logging.getLogger("ghapp.simulator")

HOST = "127.0.0.1"


class _QuietRequestHandler(WSGIRequestHandler):
    """Sends werkzeug's per-request lines to our logger at DEBUG instead of stderr."""

    def log(self, type: str, message: str, *args: Any) -> None:
        level = logging.WARNING if type == "error" else logging.DEBUG
        logger.log(level, "%s - " + message, self.address_string(), *args)

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header, by the simulator's (possibly skewed) clock."""
        clock: SimClock = getattr(self.server, "clock", SimClock())
        return http_date(clock.now() if timestamp is None else timestamp)


class _QuietServer(ThreadedWSGIServer):
    clock: SimClock

    def log(self, type: str, message: str, *args: Any) -> None:
        level = logging.ERROR if type == "error" else logging.DEBUG
        logger.log(level, message, *args)


class GitHubSimulator:
    """GitHub on loopback: Apps, installation tokens, git clone/fetch over HTTP, webhooks.

    ``start()`` binds 127.0.0.1 (on ``port``, by default a free one); ``url`` is then the git
    host (GITHUB_URL) and ``api_url`` the GHES-style API base (GITHUB_API_URL). The API is
    also served at the root. Bare repositories live under ``root``.

    The simulator holds any number of Apps. The one given at construction (``app_id`` and
    ``public_key_pem``) is the first App, the one ``webhook_url``, ``webhook_secret``,
    ``app_permissions``, ``add_installation`` and ``send_webhook`` mean by default; without
    them the simulator starts with no App and Apps are registered through the manifest flow
    (``POST /settings/apps/new``) or ``register_app``.
    """

    def __init__(
        self,
        app_id: str | int | None = None,
        public_key_pem: bytes | None = None,
        root: Path | str | None = None,
        *,
        port: int = 0,
    ) -> None:
        if root is None:
            raise TypeError("GitHubSimulator needs a root directory for its repositories")
        if (app_id is None) != (public_key_pem is None):
            raise TypeError("give both app_id and public_key_pem, or neither")
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = int(port)
        self._registry = Registry()
        self.app_id: str | None = None
        if app_id is not None and public_key_pem is not None:
            self.app_id = self._add_constructed_app(str(app_id), public_key_pem).id
        self._webhooks = WebhookSender(self._registry)
        self._app = SimulatorApp(
            self._registry,
            AppJwtVerifier(self._public_key_of, self._registry.clock.now),
            GitHttpBackend(self._registry, self.root, repositories.git_env),
            self._webhooks,
        )
        self._server: _QuietServer | None = None
        self._thread: threading.Thread | None = None
        self._commit_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def enable_control(self, token: str) -> None:
        """Serve ``/_simulator/push`` and ``/_simulator/rerun`` (control.py) to requests that
        carry ``token``, for a standalone simulator other processes drive (``ghapp simulate
        push``)."""
        self._app.control = control_routes(self, token)

    # Lifecycle ---------------------------------------------------------------------------

    def start(self, port: int | None = None) -> GitHubSimulator:
        """Listen on 127.0.0.1:``port`` (default: the constructor's, 0 for a free port)."""
        if self._server is not None:
            return self
        if port is not None:
            self.port = int(port)
        server = _QuietServer(HOST, self.port, self._app, handler=_QuietRequestHandler)
        server.clock = self._registry.clock
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"github-simulator-{server.server_port}",
            daemon=True,
        )
        self._server, self._thread = server, thread
        thread.start()
        logger.debug("GitHub simulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        self._webhooks.join()
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=10)

    def __enter__(self) -> GitHubSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the git host, i.e. GITHUB_URL."""
        if self._server is None:
            raise RuntimeError("GitHubSimulator is not running; call start() first")
        return f"http://{HOST}:{self._server.server_port}"

    @property
    def api_url(self) -> str:
        """``url + "/api/v3"``: the REST API base, i.e. GITHUB_API_URL."""
        return self.url + API_PREFIX

    # Records -----------------------------------------------------------------------------

    @property
    def issued_tokens(self) -> list[MintRecord]:
        """Every installation token minted so far, oldest first."""
        return self._registry.mints()

    @property
    def requests(self) -> list[RequestRecord]:
        """Every HTTP request answered so far, oldest first."""
        return self._registry.requests()

    @property
    def token_lifetime(self) -> int:
        """Seconds a newly minted token stays valid (GitHub: 3600)."""
        return self._registry.token_lifetime

    @token_lifetime.setter
    def token_lifetime(self, seconds: int) -> None:
        self._registry.token_lifetime = int(seconds)

    @property
    def app_permissions(self) -> dict[str, str]:
        """The permissions the App was granted (name -> "read" / "write" / "admin"): a token
        minted without ``permissions`` gets all of them, and a token can only ask for these,
        at these levels or lower. Default: contents read, checks write, statuses write,
        metadata read."""
        return self._registry.app_permissions

    @app_permissions.setter
    def app_permissions(self, permissions: Mapping[str, str]) -> None:
        for name, level in permissions.items():
            if not isinstance(name, str) or level not in LEVELS:
                raise ValueError(f"permission {name!r}: level must be one of {list(LEVELS)}")
        self._registry.app_permissions = dict(permissions)

    def inject_failure(
        self,
        method: str,
        path_prefix: str,
        status: int,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        """Answer the next ``times`` requests matching ``method`` (``"*"`` for any) and
        ``path_prefix`` (relative to the server root) with ``status``/``headers``/JSON ``body``."""
        self._registry.add_failure(
            InjectedFailure(
                method=method,
                path_prefix=path_prefix,
                status=status,
                remaining=times,
                headers=dict(headers or {}),
                body=None if body is None else dict(body),
            )
        )

    # Clock -------------------------------------------------------------------------------

    @property
    def clock_offset(self) -> float:
        """Seconds the simulator's clock runs ahead of (negative: behind) the real one; it
        judges JWT iat/exp, stamps ``Date`` headers and token and delivery times."""
        return self._registry.clock.offset

    @clock_offset.setter
    def clock_offset(self, seconds: float) -> None:
        self._registry.clock.offset = float(seconds)

    # Webhooks ----------------------------------------------------------------------------

    @property
    def webhook_url(self) -> str | None:
        """The first App's hook URL, where ``send_webhook`` and redeliveries post; None (the
        default) records failures."""
        app = self._registry.first_app()
        return app.webhook_url if app is not None else None

    @webhook_url.setter
    def webhook_url(self, url: str | None) -> None:
        self._registry.update_app(self._first_app().id, webhook_url=url)

    @property
    def webhook_secret(self) -> bytes | None:
        """The first App's webhook secret; None (the default) sends no signature headers."""
        app = self._registry.first_app()
        return app.webhook_secret if app is not None else None

    @webhook_secret.setter
    def webhook_secret(self, secret: bytes | str | None) -> None:
        value = secret.encode() if isinstance(secret, str) else secret
        self._registry.update_app(self._first_app().id, webhook_secret=value)

    def send_webhook(
        self,
        event: str,
        payload: Mapping[str, Any],
        guid: str | None = None,
        app: str | int | None = None,
    ) -> HookDelivery:
        """POST ``payload`` as a signed ``event`` webhook to the hook URL of ``app`` (an App id
        or slug; default: the first App), synchronously, and return the recorded attempt;
        network failures are recorded, not raised. The hook is used even when inactive."""
        app_id = None if app is None else self.app(app).id
        return self._webhooks.send(event, dict(payload), guid, app_id)

    @property
    def hook_deliveries(self) -> list[HookDelivery]:
        """Every webhook delivery attempt to any App (first sends and redeliveries), oldest
        first; ``HookDelivery.app_id`` says whose hook it went to."""
        return self._registry.deliveries()

    @property
    def redelivery_requests(self) -> list[int]:
        """Delivery ids redelivery was asked for through the API, in order."""
        return self._registry.redelivery_requests()

    # Installations -----------------------------------------------------------------------

    def add_installation(
        self,
        installation_id: int,
        account: str = "octo-org",
        suspended: bool = False,
        app: str | int | None = None,
    ) -> None:
        """Install ``app`` (id or slug; default: the first App) on ``account``; it sees the
        repositories created with ``installation_id``."""
        app_id = self._first_app().id if app is None else self.app(app).id
        self._registry.add_installation(installation_id, account, suspended, app_id)

    def suspend_installation(self, installation_id: int) -> None:
        self._registry.set_suspended(installation_id, True)

    def unsuspend_installation(self, installation_id: int) -> None:
        self._registry.set_suspended(installation_id, False)

    def delete_installation(self, installation_id: int) -> None:
        self._registry.delete_installation(installation_id)

    # Repositories ------------------------------------------------------------------------

    def create_repository(
        self,
        full_name: str,
        installation_id: int | None = None,
        files: Mapping[str, str | bytes] | None = None,
        branch: str = "main",
    ) -> Repository:
        """Create a repository seen by the first App's installation ``installation_id`` (added
        on the fly if unknown, for the repository's owner), or by no installation when None
        (the install page can install Apps on it later). With ``files``, the default branch
        gets an initial commit."""
        owner, sep, name = full_name.partition("/")
        if not sep or not owner or not name or "/" in name or name.endswith(".git"):
            raise ValueError(f"repository name must look like 'owner/name', got {full_name!r}")
        if installation_id is not None and self._registry.installation(installation_id) is None:
            self._registry.add_installation(installation_id, owner, False, self._first_app().id)
        clone_url = f"{self.url}/{full_name}.git"
        path = self.root / owner / f"{name}.git"
        repo = self._registry.add_repository(
            lambda repo_id: Repository(
                id=repo_id,
                full_name=full_name,
                name=name,
                owner=owner,
                installation_id=installation_id,
                clone_url=clone_url,
                default_branch=branch,
                path=path,
            )
        )
        repositories.init_bare(path, branch)
        if files:
            self.commit(full_name, files=files, message="Initial commit", branch=branch)
        return repo

    def repository(self, full_name: str) -> Repository:
        repo = self._registry.repository(full_name)
        if repo is None:
            raise KeyError(f"no repository {full_name}")
        return repo

    def commit(
        self,
        full_name: str,
        files: Mapping[str, str | bytes] | None = None,
        message: str = "Update files",
        branch: str | None = None,
        delete: Iterable[str] = (),
    ) -> str:
        """Commit on top of ``branch`` (default branch if None; a new branch starts at the
        default branch's tip) and return the new commit's sha."""
        repo = self.repository(full_name)
        branch = branch or repo.default_branch
        with self._commit_lock(repo):
            parent = repositories.resolve(repo.path, f"refs/heads/{branch}")
            if parent is None:
                parent = repositories.resolve(repo.path, f"refs/heads/{repo.default_branch}")
            return repositories.write_commit(
                repo.path, f"refs/heads/{branch}", parent, files or {}, tuple(delete), message
            )

    def branch_tip(self, full_name: str, branch: str | None = None) -> str:
        repo = self.repository(full_name)
        sha = repositories.resolve(repo.path, f"refs/heads/{branch or repo.default_branch}")
        if sha is None:
            raise KeyError(f"{full_name} has no branch {branch or repo.default_branch}")
        return sha

    # Webhook payloads --------------------------------------------------------------------

    def push_payload(
        self,
        full_name: str,
        before: str | None,
        after: str,
        ref: str = "refs/heads/main",
        installation_id: int | None = None,
    ) -> dict[str, Any]:
        """A ``push`` event body for ``ref`` moving from ``before`` (None: ref created) to
        ``after`` (all zeros: ref deleted)."""
        repo = self.repository(full_name)
        before = _full_sha(repo, before) if before and before != ZERO_SHA else ZERO_SHA
        after = _full_sha(repo, after) if after != ZERO_SHA else ZERO_SHA
        commits: list[repositories.CommitInfo] = []
        head = None
        forced = False
        if after != ZERO_SHA:
            if before == ZERO_SHA:
                exclude = [f"--exclude={ref}", "--glob=refs/heads/*"]
            else:
                exclude = [before]
                forced = not repositories.is_ancestor(repo.path, before, after)
            commits = repositories.commits_between(repo.path, after, exclude)
            head = next((c for c in commits if c.sha == after), None)
            head = head or repositories.commit_info(repo.path, after)
        return push_event(
            repo,
            ref=ref,
            before=before,
            after=after,
            forced=forced,
            commits=commits,
            head_commit=head,
            installation_id=self._push_installation(repo, installation_id),
            owner_id=self._registry.account_id(repo.owner),
            html_url=self.url,
            api_url=self.api_url,
            pushed_at=int(self._registry.clock.now()),
        )

    # Checks and commit statuses ---------------------------------------------------------

    def check_runs(self, full_name: str, sha: str | None = None) -> list[dict[str, Any]]:
        """The repository's check runs (of commit ``sha`` if given), oldest first, as the
        REST API shows them."""
        repo = self.repository(full_name)
        head_sha = None if sha is None else _full_sha(repo, sha)
        links = self._links()
        return [
            self._app.checks.run_json(run, repo, links)
            for run in self._registry.check_runs(repo.id, head_sha)
        ]

    def check_run_annotations(self, full_name: str, check_run_id: int) -> list[dict[str, Any]]:
        """Every annotation of the check run, in the order they were sent."""
        return self._check_run(full_name, check_run_id).annotations

    def statuses(self, full_name: str, sha: str) -> list[dict[str, Any]]:
        """The commit statuses posted to ``sha``, oldest first, as the REST API shows them."""
        repo = self.repository(full_name)
        links = self._links()
        return [
            status_json(status, repo, links)
            for status in self._registry.statuses(repo.id, _full_sha(repo, sha))
        ]

    def check_run_payload(
        self,
        full_name: str,
        check_run_id: int,
        action: str = "rerequested",
        app_id: str | int | None = None,
    ) -> dict[str, Any]:
        """A ``check_run`` event body (``created``, ``completed``, ``rerequested``,
        ``requested_action``) for a stored check run; ``app_id`` replaces the App's id in it,
        as if another App owned the run."""
        repo = self.repository(full_name)
        run = self._check_run(full_name, check_run_id)
        return self._app.checks.check_run_event(run, repo, action, self._links(), app_id)

    def check_suite_payload(
        self,
        full_name: str,
        head_sha: str,
        action: str = "rerequested",
        branch: str | None = None,
        app_id: str | int | None = None,
    ) -> dict[str, Any]:
        """A ``check_suite`` event body (``requested``, ``rerequested``, ``completed``) for the
        App's suite of ``head_sha``, created if missing; ``branch`` names its head branch (by
        default the branch whose tip it is, else the default branch); ``app_id`` replaces the
        App's id, as if another App owned the suite."""
        repo = self.repository(full_name)
        suite = self._app.checks.suite(repo, _full_sha(repo, head_sha), branch)
        return self._app.checks.check_suite_event(suite, repo, action, self._links(), app_id)

    # Apps --------------------------------------------------------------------------------

    def apps(self) -> list[SimulatedApp]:
        """Every App, the first one first."""
        return self._registry.apps()

    def app(self, app_id_or_slug: str | int) -> SimulatedApp:
        """The App with this id or slug; KeyError if there is none."""
        app = self._registry.app(app_id_or_slug)
        if app is None:
            raise KeyError(f"no App {app_id_or_slug}")
        return app

    def register_app(
        self, manifest: Mapping[str, Any], owner: str = AUTHOR_LOGIN
    ) -> tuple[SimulatedApp, bytes]:
        """Register an App from a manifest (the same checks as the manifest page; ValueError
        listing the problems) without the browser steps; returns it and its private key PEM."""
        try:
            parsed = manifest_from_document(dict(manifest), self._registry)
            app, code = register_app(self._registry, parsed, owner)
        except ManifestRejected as exc:
            raise ValueError("; ".join(exc.errors)) from None
        record = self._registry.redeem_manifest_code(code.code, float("inf"))
        assert record is not None
        return app, record.private_key_pem

    def update_app(self, app: str | int, **settings: Any) -> SimulatedApp:
        """Change an App's settings (``webhook_url``, ``webhook_secret`` as bytes,
        ``webhook_active``, ``permissions``, ``events``, ``setup_url``...)."""
        return self._registry.update_app(self.app(app).id, **settings)

    def installations(self, app: str | int | None = None) -> list[Installation]:
        """Every installation (of ``app``, an id or slug, if given), oldest id first."""
        return self._registry.installations(None if app is None else self.app(app).id)

    def installations_of(self, full_name: str) -> list[Installation]:
        """The installations, of any App, that can see the repository."""
        return self._registry.installations_of_repository(self.repository(full_name))

    def push(
        self,
        full_name: str,
        files: Mapping[str, str | bytes] | None = None,
        branch: str | None = None,
        message: str = "Update files",
        delete: Iterable[str] = (),
    ) -> list[HookDelivery]:
        """Commit (as ``commit`` does) and deliver the ``push`` event as GitHub does: to every
        App installed on the repository whose hook is active and has a URL and that is
        subscribed to ``push`` (the first App given at construction counts as subscribed),
        each with its own installation id and signature. Returns the deliveries, one per App."""
        repo = self.repository(full_name)
        branch = branch or repo.default_branch
        ref = f"refs/heads/{branch}"
        before = repositories.resolve(repo.path, ref)
        after = self.commit(full_name, files=files, message=message, branch=branch, delete=delete)
        deliveries = []
        for installation in self._registry.installations_of_repository(repo):
            app = self._registry.app(installation.app_id)
            if app is None or not app.webhook_active or not app.webhook_url:
                continue
            if "push" not in app.events and app.id != self.app_id:
                continue
            payload = self.push_payload(full_name, before, after, ref, installation.id)
            deliveries.append(self._webhooks.send("push", payload, app_id=app.id))
        return deliveries

    # Internals ---------------------------------------------------------------------------

    def _add_constructed_app(self, app_id: str, public_key_pem: bytes) -> SimulatedApp:
        load_app_public_key(public_key_pem)  # fail now on a key that is not an RSA public key
        return self._registry.add_app(
            lambda _proposed, hook_id: SimulatedApp(
                id=app_id,
                slug=APP_SLUG,
                name=APP_NAME,
                owner=AUTHOR_LOGIN,
                public_key_pem=public_key_pem,
                permissions=dict(DEFAULT_APP_PERMISSIONS),
                events=("check_run", "check_suite", "push"),
                hook_id=hook_id,
                client_id=f"Iv1.sim{app_id}",
                created_at=APP_CREATED_AT,
            )
        )

    def _public_key_of(self, app_id: str) -> RSAPublicKey | None:
        app = self._registry.app(app_id)
        if app is None or app.id != app_id:
            return None
        return load_app_public_key(app.public_key_pem)

    def _first_app(self) -> SimulatedApp:
        app = self._registry.first_app()
        if app is None:
            raise RuntimeError("the simulator has no App yet")
        return app

    def _push_installation(self, repo: Repository, installation_id: int | None) -> int:
        if installation_id is not None:
            return installation_id
        if repo.installation_id is not None:
            return repo.installation_id
        installations = self._registry.installations_of_repository(repo)
        if not installations:
            raise ValueError(f"{repo.full_name} has no installation; pass installation_id")
        return installations[0].id

    def _links(self) -> Links:
        return Links(html_url=self.url, api_url=self.api_url)

    def _check_run(self, full_name: str, check_run_id: int) -> CheckRun:
        run = self._registry.check_run(self.repository(full_name).id, check_run_id)
        if run is None:
            raise KeyError(f"{full_name} has no check run {check_run_id}")
        return run

    def _commit_lock(self, repo: Repository) -> threading.Lock:
        with self._locks_guard:
            return self._commit_locks.setdefault(repo.full_name.lower(), threading.Lock())


def _full_sha(repo: Repository, revision: str) -> str:
    sha = repositories.resolve(repo.path, revision)
    if sha is None:
        raise ValueError(f"{repo.full_name} has no commit {revision}")
    return sha
