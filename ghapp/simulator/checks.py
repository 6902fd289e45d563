"""The Checks API: the App's check runs in check suites (create, update, get, annotations,
list for a ref), their JSON, and the ``check_run`` / ``check_suite`` webhook bodies."""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request, Response

from ghapp.simulator import repositories
from ghapp.simulator.check_input import (
    STATUSES,
    CheckRunInput,
    Invalid,
    check_run_input,
    json_body,
)
from ghapp.simulator.installation_auth import authorize
from ghapp.simulator.models import CheckRun, CheckSuite, Repository
from ghapp.simulator.payloads import (
    AUTHOR_LOGIN,
    SENDER_ID,
    Links,
    app_payload,
    installation_payload,
    iso,
    node_id,
    organization_payload,
    repository_payload,
    user_payload,
)
from ghapp.simulator.registry import Registry
from ghapp.simulator.repositories import ZERO_SHA
from ghapp.simulator.responses import error_response, json_response, not_found, validation_failed

CHECK_RUN_ACTIONS = ("created", "completed", "rerequested", "requested_action")
CHECK_SUITE_ACTIONS = ("requested", "rerequested", "completed")
# A suite's conclusion is the most pressing one among its latest check runs.
_SUITE_CONCLUSION_ORDER = (
    "action_required",
    "cancelled",
    "timed_out",
    "failure",
    "neutral",
    "success",
    "skipped",
)
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100


class ChecksApi:
    """The check run endpoints of one simulator (its state, its App and its URLs). Check runs
    and suites are shown as the first App's (the one given at construction, else the first
    registered from a manifest)."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    @property
    def app_id(self) -> str:
        app = self._registry.first_app()
        return app.id if app is not None else "0"

    # Endpoints ---------------------------------------------------------------------------

    def create(self, request: Request, links: Links, owner: str, name: str) -> Response:
        """``POST /repos/{owner}/{repo}/check-runs`` (checks: write)."""
        repo = authorize(request, self._registry, f"{owner}/{name}", "checks", "write")
        if isinstance(repo, Response):
            return repo
        try:
            given = check_run_input(json_body(request), creating=True)
            head_sha = given.fields["head_sha"]
            if resolve_commit(repo, head_sha) != head_sha:
                raise Invalid(error_response(422, f"No commit found for SHA: {head_sha}"))
            lifecycle = _lifecycle(None, given, iso(self._registry.clock.now()))
        except Invalid as exc:
            return exc.response
        suite = self.suite(repo, head_sha)
        output = given.output or {}
        run = self._registry.add_check_run(
            lambda run_id: CheckRun(
                id=run_id,
                repository_id=repo.id,
                check_suite_id=suite.id,
                head_sha=head_sha,
                name=given.fields["name"],
                external_id=given.fields.get("external_id", ""),
                output_title=output.get("title"),
                output_summary=output.get("summary"),
                output_text=output.get("text"),
                annotations=[_with_blob_href(a, repo, head_sha, links) for a in given.annotations],
                created_at=self._registry.clock.now(),
                **lifecycle,
            )
        )
        return json_response(201, self.run_json(run, repo, links))

    def update(
        self, request: Request, links: Links, owner: str, name: str, run_id: str
    ) -> Response:
        """``PATCH /repos/{owner}/{repo}/check-runs/{id}`` (checks: write); annotations given
        are appended to those stored, the output's title, summary and text replaced."""
        repo = authorize(request, self._registry, f"{owner}/{name}", "checks", "write")
        if isinstance(repo, Response):
            return repo
        current = self._registry.check_run(repo.id, int(run_id))
        if current is None:
            return not_found()
        try:
            given = check_run_input(json_body(request), creating=False)
            lifecycle = _lifecycle(current, given, iso(self._registry.clock.now()))
        except Invalid as exc:
            return exc.response
        annotations = [_with_blob_href(a, repo, current.head_sha, links) for a in given.annotations]

        def change(run: CheckRun) -> None:
            run.name = given.fields.get("name", run.name)
            run.external_id = given.fields.get("external_id", run.external_id)
            for name, value in lifecycle.items():
                setattr(run, name, value)
            if given.output is not None:
                run.output_title = given.output.get("title", run.output_title)
                run.output_summary = given.output.get("summary", run.output_summary)
                run.output_text = given.output.get("text", run.output_text)
            run.annotations.extend(annotations)

        updated = self._registry.update_check_run(repo.id, current.id, change)
        if updated is None:
            return not_found()
        return json_response(200, self.run_json(updated, repo, links))

    def get(self, request: Request, links: Links, owner: str, name: str, run_id: str) -> Response:
        """``GET /repos/{owner}/{repo}/check-runs/{id}`` (checks: read)."""
        repo = authorize(request, self._registry, f"{owner}/{name}", "checks", "read")
        if isinstance(repo, Response):
            return repo
        run = self._registry.check_run(repo.id, int(run_id))
        if run is None:
            return not_found()
        return json_response(200, self.run_json(run, repo, links))

    def annotations(
        self, request: Request, links: Links, owner: str, name: str, run_id: str
    ) -> Response:
        """``GET /repos/{owner}/{repo}/check-runs/{id}/annotations`` (checks: read)."""
        repo = authorize(request, self._registry, f"{owner}/{name}", "checks", "read")
        if isinstance(repo, Response):
            return repo
        run = self._registry.check_run(repo.id, int(run_id))
        if run is None:
            return not_found()
        return json_response(200, _page(request, run.annotations))

    def list_for_ref(
        self, request: Request, links: Links, owner: str, name: str, ref: str
    ) -> Response:
        """``GET /repos/{owner}/{repo}/commits/{ref}/check-runs`` (checks: read), newest first,
        filtered by ``check_name``, ``status`` and ``filter`` (``latest``, the default, keeps
        the newest run of each name; ``all`` keeps every run)."""
        repo = authorize(request, self._registry, f"{owner}/{name}", "checks", "read")
        if isinstance(repo, Response):
            return repo
        sha = resolve_commit(repo, ref)
        if sha is None:
            return error_response(422, f"No commit found for SHA: {ref}")
        runs = self._registry.check_runs(repo.id, sha)
        if request.args.get("filter", "latest") != "all":
            runs = _latest_per_name(runs)
        check_name = request.args.get("check_name")
        status = request.args.get("status")
        if status is not None and status not in STATUSES:
            return validation_failed("CheckRun", "status", "invalid")
        runs = [
            r
            for r in sorted(runs, key=lambda r: r.id, reverse=True)
            if (check_name is None or r.name == check_name)
            and (status is None or r.status == status)
        ]
        shown = [self.run_json(r, repo, links) for r in _page(request, runs)]
        return json_response(200, {"total_count": len(runs), "check_runs": shown})

    # Records and JSON --------------------------------------------------------------------

    def suite(self, repo: Repository, head_sha: str, branch: str | None = None) -> CheckSuite:
        """The App's suite for ``head_sha``, created on first use for the branch whose tip it
        is (else the default branch); ``branch`` names the branch instead."""
        now = self._registry.clock.now()
        existing = self._registry.find_check_suite(repo.id, head_sha, branch)
        if existing is not None:
            return existing
        head_branch = branch or _branch_of(repo, head_sha)
        before = repositories.resolve(repo.path, f"{head_sha}^") or ZERO_SHA
        return self._registry.check_suite_for(
            repo.id,
            head_sha,
            lambda suite_id: CheckSuite(
                id=suite_id,
                repository_id=repo.id,
                head_sha=head_sha,
                head_branch=head_branch,
                before=before,
                created_at=now,
                updated_at=now,
            ),
        )

    def app(self, links: Links, app_id: str | int | None = None) -> dict[str, Any]:
        return app_payload(
            self.app_id if app_id is None else app_id, self._registry.app_permissions, links
        )

    def run_json(
        self, run: CheckRun, repo: Repository, links: Links, app_id: str | int | None = None
    ) -> dict[str, Any]:
        """A check run as the REST API shows it."""
        run_url = f"{links.api_url}/repos/{repo.full_name}/check-runs/{run.id}"
        app = self.app(links, app_id)
        return {
            "id": run.id,
            "name": run.name,
            "node_id": node_id("CheckRun", run.id),
            "head_sha": run.head_sha,
            "external_id": run.external_id,
            "url": run_url,
            "html_url": f"{links.html_url}/{repo.full_name}/runs/{run.id}",
            # GitHub: without a details_url, the App's homepage is used.
            "details_url": run.details_url or app["external_url"],
            "status": run.status,
            "conclusion": run.conclusion,
            "started_at": run.started_at,
            "completed_at": run.completed_at,
            "output": {
                "title": run.output_title,
                "summary": run.output_summary,
                "text": run.output_text,
                "annotations_count": len(run.annotations),
                "annotations_url": f"{run_url}/annotations",
            },
            "check_suite": {"id": run.check_suite_id},
            "app": app,
            "pull_requests": [],
        }

    def suite_json(
        self,
        suite: CheckSuite,
        repo: Repository,
        links: Links,
        app_id: str | int | None = None,
        with_counts: bool = True,
    ) -> dict[str, Any]:
        """A check suite as webhooks show it; ``with_counts`` adds what only the
        ``check_suite`` event carries (run count, runs URL, head commit)."""
        latest = _latest_per_name(self._registry.check_runs(repo.id, suite.head_sha))
        status, conclusion = _suite_state(latest)
        suite_url = f"{links.api_url}/repos/{repo.full_name}/check-suites/{suite.id}"
        body: dict[str, Any] = {
            "id": suite.id,
            "node_id": node_id("CheckSuite", suite.id),
            "head_branch": suite.head_branch,
            "head_sha": suite.head_sha,
            "status": status,
            "conclusion": conclusion,
            "url": suite_url,
            "before": suite.before,
            "after": suite.head_sha,
            "pull_requests": [],
            "app": self.app(links, app_id),
            "created_at": iso(suite.created_at),
            "updated_at": iso(suite.updated_at),
        }
        if with_counts:
            body.update(
                {
                    "rerequestable": True,
                    "runs_rerequestable": True,
                    "latest_check_runs_count": len(latest),
                    "check_runs_url": f"{suite_url}/check-runs",
                    "head_commit": _head_commit(repo, suite.head_sha),
                }
            )
        return body

    def check_run_event(
        self, run: CheckRun, repo: Repository, action: str, links: Links, app_id: str | int | None
    ) -> dict[str, Any]:
        """A ``check_run`` webhook body for ``run``."""
        if action not in CHECK_RUN_ACTIONS:
            raise ValueError(f"check_run action must be one of {CHECK_RUN_ACTIONS}")
        suite = self._registry.check_suite(run.check_suite_id)
        assert suite is not None
        check_run = self.run_json(run, repo, links, app_id)
        check_run["check_suite"] = self.suite_json(suite, repo, links, app_id, with_counts=False)
        return {"action": action, "check_run": check_run, **self._context(repo, links)}

    def check_suite_event(
        self,
        suite: CheckSuite,
        repo: Repository,
        action: str,
        links: Links,
        app_id: str | int | None,
    ) -> dict[str, Any]:
        """A ``check_suite`` webhook body for ``suite``."""
        if action not in CHECK_SUITE_ACTIONS:
            raise ValueError(f"check_suite action must be one of {CHECK_SUITE_ACTIONS}")
        check_suite = self.suite_json(suite, repo, links, app_id)
        return {"action": action, "check_suite": check_suite, **self._context(repo, links)}

    def _context(self, repo: Repository, links: Links) -> dict[str, Any]:
        """What every repository event carries besides its subject."""
        owner_id = self._registry.account_id(repo.owner)
        now = int(self._registry.clock.now())
        return {
            "repository": repository_payload(
                repo,
                owner_id=owner_id,
                html_url=links.html_url,
                api_url=links.api_url,
                pushed_at=now,
            ),
            "organization": organization_payload(repo.owner, owner_id, links.api_url),
            "sender": user_payload(AUTHOR_LOGIN, SENDER_ID, "User", links.html_url, links.api_url),
            "installation": installation_payload(self._installation_id(repo)),
        }

    def _installation_id(self, repo: Repository) -> int:
        """The first App's installation that sees ``repo`` (0 if none)."""
        return next(
            (
                i.id
                for i in self._registry.installations_of_repository(repo)
                if i.app_id == self.app_id
            ),
            repo.installation_id or 0,
        )


def resolve_commit(repo: Repository, ref: str) -> str | None:
    """The commit sha ``ref`` (a sha, branch or tag) names in ``repo``, or None."""
    if not ref or ref.startswith("-") or any(c.isspace() for c in ref):
        return None
    return repositories.resolve(repo.path, ref)


def _lifecycle(current: CheckRun | None, given: CheckRunInput, now: str) -> dict[str, Any]:
    """The run's status, conclusion, times and details_url after applying ``given``, by
    GitHub's rules: a conclusion or completed_at completes the run, a completed run needs a
    conclusion, and ``action_required`` needs a details_url."""
    fields = given.fields
    status = fields.get("status", current.status if current else "queued")
    conclusion = fields.get("conclusion", current.conclusion if current else None)
    completed_at = fields.get("completed_at", current.completed_at if current else None)
    if "conclusion" in fields or "completed_at" in fields:
        status = "completed"
    elif status != "completed":
        conclusion = completed_at = None  # back to queued / in progress
    if status == "completed":
        if conclusion is None:
            raise Invalid(validation_failed("CheckRun", "conclusion", "missing_field"))
        completed_at = completed_at or now
    details_url = fields.get("details_url", current.details_url if current else None)
    if conclusion == "action_required" and not details_url:
        raise Invalid(validation_failed("CheckRun", "details_url", "missing_field"))
    return {
        "status": status,
        "conclusion": conclusion,
        "started_at": fields.get("started_at", current.started_at if current else now),
        "completed_at": completed_at,
        "details_url": details_url,
    }


def _with_blob_href(
    annotation: dict[str, Any], repo: Repository, sha: str, links: Links
) -> dict[str, Any]:
    blob_href = f"{links.html_url}/{repo.full_name}/blob/{sha}/{annotation['path']}"
    return {"path": annotation["path"], "blob_href": blob_href, **annotation}


def _latest_per_name(runs: list[CheckRun]) -> list[CheckRun]:
    latest: dict[str, CheckRun] = {}
    for run in sorted(runs, key=lambda r: r.id):
        latest[run.name] = run
    return sorted(latest.values(), key=lambda r: r.id)


def _suite_state(runs: list[CheckRun]) -> tuple[str, str | None]:
    statuses = {r.status for r in runs}
    if not runs or statuses == {"queued"}:
        return "queued", None
    if statuses != {"completed"}:
        return "in_progress", None
    conclusions = {r.conclusion for r in runs}
    return "completed", next((c for c in _SUITE_CONCLUSION_ORDER if c in conclusions), None)


def _branch_of(repo: Repository, sha: str) -> str:
    branches = repositories.branches_at(repo.path, sha)
    if repo.default_branch in branches or not branches:
        return repo.default_branch
    return branches[0]


def _head_commit(repo: Repository, sha: str) -> dict[str, Any]:
    info = repositories.commit_info(repo.path, sha)
    return {
        "id": info.sha,
        "tree_id": info.tree,
        "message": info.message,
        "timestamp": info.committed_at,
        "author": {"name": info.author_name, "email": info.author_email},
        "committer": {"name": info.committer_name, "email": info.committer_email},
    }


def _page(request: Request, items: list[Any]) -> list[Any]:
    per_page = _positive_int(request.args.get("per_page"), DEFAULT_PER_PAGE)
    per_page = min(per_page, MAX_PER_PAGE)
    page = _positive_int(request.args.get("page"), 1)
    return items[(page - 1) * per_page : page * per_page]


def _positive_int(raw: str | None, default: int) -> int:
    try:
        value = int(raw) if raw is not None else default
    except ValueError:
        return default
    return max(value, 1)
