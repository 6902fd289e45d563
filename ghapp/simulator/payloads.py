"""Webhook event payloads (``push``) and the objects they embed, shaped like GitHub's."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from ghapp.simulator.models import Installation, Repository, SimulatedApp
from ghapp.simulator.repositories import AUTHOR_EMAIL, AUTHOR_LOGIN, ZERO_SHA, CommitInfo

SENDER_ID = 583231  # the Octocat's user id on github.com
APP_SLUG = "ghapp-simulated-app"
APP_NAME = "ghapp simulated app"


@dataclass(frozen=True)
class Links:
    """The bases of the URLs that API answers and payloads embed."""

    html_url: str  # e.g. http://127.0.0.1:PORT
    api_url: str  # e.g. http://127.0.0.1:PORT/api/v3


def node_id(kind: str, number: int) -> str:
    """A GraphQL-style global node id, in GitHub's legacy base64 ``0NN:KindID`` form."""
    return base64.b64encode(f"0{len(kind)}:{kind}{number}".encode()).decode()


def push_event(
    repo: Repository,
    *,
    ref: str,
    before: str,
    after: str,
    forced: bool,
    commits: list[CommitInfo],
    head_commit: CommitInfo | None,
    installation_id: int,
    owner_id: int,
    html_url: str,
    api_url: str,
    pushed_at: int,
) -> dict[str, Any]:
    """The body of a ``push`` webhook for ``ref`` moving from ``before`` to ``after``."""
    created = before == ZERO_SHA
    deleted = after == ZERO_SHA
    repo_html = f"{html_url}/{repo.full_name}"
    if created:
        compare = f"{repo_html}/compare/{_short_ref(ref)}"
    else:
        compare = f"{repo_html}/compare/{before[:12]}...{after[:12]}"
    return {
        "ref": ref,
        "before": before,
        "after": after,
        "repository": repository_payload(
            repo, owner_id=owner_id, html_url=html_url, api_url=api_url, pushed_at=pushed_at
        ),
        "pusher": {"name": AUTHOR_LOGIN, "email": AUTHOR_EMAIL},
        "organization": organization_payload(repo.owner, owner_id, api_url),
        "sender": user_payload(AUTHOR_LOGIN, SENDER_ID, "User", html_url, api_url),
        "installation": {
            "id": installation_id,
            "node_id": node_id("Installation", installation_id),
        },
        "created": created,
        "deleted": deleted,
        "forced": forced,
        "base_ref": None,
        "compare": compare,
        "commits": [commit_payload(c, repo_html) for c in commits],
        "head_commit": None if head_commit is None else commit_payload(head_commit, repo_html),
    }


def commit_payload(commit: CommitInfo, repo_html: str) -> dict[str, Any]:
    return {
        "id": commit.sha,
        "tree_id": commit.tree,
        "distinct": True,
        "message": commit.message,
        "timestamp": commit.committed_at,
        "url": f"{repo_html}/commit/{commit.sha}",
        "author": _person(commit.author_name, commit.author_email),
        "committer": _person(commit.committer_name, commit.committer_email),
        "added": list(commit.added),
        "removed": list(commit.removed),
        "modified": list(commit.modified),
    }


# The URL templates GitHub puts in every repository object, by field name: (path, template).
_REPO_URLS = (
    ("forks_url", "/forks", ""),
    ("keys_url", "/keys", "{/key_id}"),
    ("collaborators_url", "/collaborators", "{/collaborator}"),
    ("teams_url", "/teams", ""),
    ("hooks_url", "/hooks", ""),
    ("issue_events_url", "/issues/events", "{/number}"),
    ("events_url", "/events", ""),
    ("assignees_url", "/assignees", "{/user}"),
    ("branches_url", "/branches", "{/branch}"),
    ("tags_url", "/tags", ""),
    ("blobs_url", "/git/blobs", "{/sha}"),
    ("git_tags_url", "/git/tags", "{/sha}"),
    ("git_refs_url", "/git/refs", "{/sha}"),
    ("trees_url", "/git/trees", "{/sha}"),
    ("statuses_url", "/statuses/", "{sha}"),
    ("languages_url", "/languages", ""),
    ("stargazers_url", "/stargazers", ""),
    ("contributors_url", "/contributors", ""),
    ("subscribers_url", "/subscribers", ""),
    ("subscription_url", "/subscription", ""),
    ("commits_url", "/commits", "{/sha}"),
    ("git_commits_url", "/git/commits", "{/sha}"),
    ("comments_url", "/comments", "{/number}"),
    ("issue_comment_url", "/issues/comments", "{/number}"),
    ("contents_url", "/contents/", "{+path}"),
    ("compare_url", "/compare/", "{base}...{head}"),
    ("merges_url", "/merges", ""),
    ("archive_url", "/", "{archive_format}{/ref}"),
    ("downloads_url", "/downloads", ""),
    ("issues_url", "/issues", "{/number}"),
    ("pulls_url", "/pulls", "{/number}"),
    ("milestones_url", "/milestones", "{/number}"),
    ("notifications_url", "/notifications", "{?since,all,participating}"),
    ("labels_url", "/labels", "{/name}"),
    ("releases_url", "/releases", "{/id}"),
    ("deployments_url", "/deployments", ""),
)


def repository_payload(
    repo: Repository, *, owner_id: int, html_url: str, api_url: str, pushed_at: int
) -> dict[str, Any]:
    """The repository as a ``push`` event carries it: GitHub's full repository object."""
    host = urlsplit(html_url).netloc
    repo_api = f"{api_url}/repos/{repo.full_name}"
    owner = user_payload(repo.owner, owner_id, "Organization", html_url, api_url)
    payload: dict[str, Any] = {
        "id": repo.id,
        "node_id": node_id("Repository", repo.id),
        "name": repo.name,
        "full_name": repo.full_name,
        "private": True,
        "owner": {"name": repo.owner, "email": None, **owner},
        "html_url": f"{html_url}/{repo.full_name}",
        "description": None,
        "fork": False,
        "url": repo_api,
    }
    for field, path, template in _REPO_URLS:
        payload[field] = f"{repo_api}{path}{template}"
    payload.update(
        {
            "created_at": pushed_at,
            "updated_at": _iso(pushed_at),
            "pushed_at": pushed_at,
            "git_url": f"git://{host}/{repo.full_name}.git",
            "ssh_url": f"git@{host}:{repo.full_name}.git",
            "clone_url": repo.clone_url,
            "svn_url": f"{html_url}/{repo.full_name}",
            "homepage": None,
            "size": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "language": None,
            "has_issues": True,
            "has_projects": True,
            "has_downloads": True,
            "has_wiki": True,
            "has_pages": False,
            "has_discussions": False,
            "forks_count": 0,
            "mirror_url": None,
            "archived": False,
            "disabled": False,
            "open_issues_count": 0,
            "license": None,
            "allow_forking": True,
            "is_template": False,
            "web_commit_signoff_required": False,
            "topics": [],
            "visibility": "private",
            "forks": 0,
            "open_issues": 0,
            "watchers": 0,
            "default_branch": repo.default_branch,
            "stargazers": 0,
            "master_branch": repo.default_branch,
            "organization": repo.owner,
            "custom_properties": {},
        }
    )
    return payload


def organization_payload(login: str, org_id: int, api_url: str) -> dict[str, Any]:
    org_api = f"{api_url}/orgs/{login}"
    return {
        "login": login,
        "id": org_id,
        "node_id": node_id("Organization", org_id),
        "url": org_api,
        "repos_url": f"{org_api}/repos",
        "events_url": f"{org_api}/events",
        "hooks_url": f"{org_api}/hooks",
        "issues_url": f"{org_api}/issues",
        "members_url": f"{org_api}/members{{/member}}",
        "public_members_url": f"{org_api}/public_members{{/member}}",
        "avatar_url": _avatar(org_id),
        "description": None,
    }


def user_payload(
    login: str, user_id: int, kind: str, html_url: str, api_url: str
) -> dict[str, Any]:
    """A user or organization account as webhook payloads embed it (``sender``, ``owner``)."""
    user_api = f"{api_url}/users/{login}"
    return {
        "login": login,
        "id": user_id,
        "node_id": node_id(kind, user_id),
        "avatar_url": _avatar(user_id),
        "gravatar_id": "",
        "url": user_api,
        "html_url": f"{html_url}/{login}",
        "followers_url": f"{user_api}/followers",
        "following_url": f"{user_api}/following{{/other_user}}",
        "gists_url": f"{user_api}/gists{{/gist_id}}",
        "starred_url": f"{user_api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{user_api}/subscriptions",
        "organizations_url": f"{user_api}/orgs",
        "repos_url": f"{user_api}/repos",
        "events_url": f"{user_api}/events{{/privacy}}",
        "received_events_url": f"{user_api}/received_events",
        "type": kind,
        "user_view_type": "public",
        "site_admin": False,
    }


APP_CREATED_AT = 1_700_000_000  # when the simulated App was "registered"


def app_payload(
    app_id: str | int, permissions: dict[str, str], links: Links, created_at: int = APP_CREATED_AT
) -> dict[str, Any]:
    """The simulated GitHub App as check runs and suites embed it (``app``)."""
    number = int(app_id) if str(app_id).isdigit() else app_id
    return {
        "id": number,
        "client_id": f"Iv1.sim{app_id}",
        "slug": APP_SLUG,
        "node_id": node_id("App", int(number) if isinstance(number, int) else 0),
        "owner": user_payload(AUTHOR_LOGIN, SENDER_ID, "User", links.html_url, links.api_url),
        "name": APP_NAME,
        "description": "",
        "external_url": f"{links.html_url}/apps/{APP_SLUG}",
        "html_url": f"{links.html_url}/apps/{APP_SLUG}",
        "created_at": _iso(created_at),
        "updated_at": _iso(created_at),
        "permissions": dict(permissions),
        "events": ["check_run", "check_suite", "push"],
    }


def installation_payload(installation_id: int) -> dict[str, Any]:
    return {"id": installation_id, "node_id": node_id("Installation", installation_id)}


def iso(timestamp: float) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` in UTC, as GitHub writes times."""
    return _iso(int(timestamp))


def _avatar(account_id: int) -> str:
    return f"https://avatars.githubusercontent.com/u/{account_id}?v=4"


def _iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _person(name: str, email: str) -> dict[str, str]:
    person = {"name": name, "email": email}
    if email == AUTHOR_EMAIL:
        person["username"] = AUTHOR_LOGIN
    return person


def _short_ref(ref: str) -> str:
    for prefix in ("refs/heads/", "refs/tags/"):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref


def integration_payload(app: SimulatedApp, links: Links, owner_id: int) -> dict[str, Any]:
    """An App as the REST API shows it (GitHub's "integration")."""
    number = int(app.id) if app.id.isdigit() else 0
    owner_kind = "User" if app.owner == AUTHOR_LOGIN else "Organization"
    owner_id = SENDER_ID if app.owner == AUTHOR_LOGIN else owner_id
    return {
        "id": number,
        "slug": app.slug,
        "node_id": node_id("App", number),
        "client_id": app.client_id,
        "owner": user_payload(app.owner, owner_id, owner_kind, links.html_url, links.api_url),
        "name": app.name,
        "description": app.description,
        "external_url": app.external_url,
        "html_url": app.html_url(links.html_url),
        "created_at": _iso(int(app.created_at)),
        "updated_at": _iso(int(app.created_at)),
        "permissions": dict(app.permissions),
        "events": list(app.events),
    }


def installation_event(
    action: str,
    installation: Installation,
    app: SimulatedApp,
    repositories: list[Repository],
    *,
    account_id: int,
    links: Links,
) -> dict[str, Any]:
    """The body of an ``installation`` webhook (``created``, ``deleted``, ...)."""
    account_kind = "User" if installation.account == AUTHOR_LOGIN else "Organization"
    account = user_payload(
        installation.account, account_id, account_kind, links.html_url, links.api_url
    )
    installation_api = f"{links.api_url}/app/installations/{installation.id}"
    created = _iso(int(installation.created_at))
    return {
        "action": action,
        "installation": {
            "id": installation.id,
            "client_id": app.client_id,
            "account": account,
            "repository_selection": "selected",
            "access_tokens_url": f"{installation_api}/access_tokens",
            "repositories_url": f"{links.api_url}/installation/repositories",
            "html_url": f"{links.html_url}/settings/installations/{installation.id}",
            "app_id": int(app.id) if app.id.isdigit() else 0,
            "app_slug": app.slug,
            "target_id": account_id,
            "target_type": account_kind,
            "permissions": dict(app.permissions),
            "events": list(app.events),
            "created_at": created,
            "updated_at": created,
            "single_file_name": None,
            "has_multiple_single_files": False,
            "single_file_paths": [],
            "suspended_by": None,
            "suspended_at": None,
        },
        "repositories": [
            {
                "id": repo.id,
                "node_id": node_id("Repository", repo.id),
                "name": repo.name,
                "full_name": repo.full_name,
                "private": True,
            }
            for repo in repositories
        ],
        "requester": None,
        "sender": user_payload(AUTHOR_LOGIN, SENDER_ID, "User", links.html_url, links.api_url),
    }
