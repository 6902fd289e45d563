"""Webhook event payloads (``push``) shaped like the ones GitHub delivers."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlsplit

from ghapp.simulator.models import Repository
from ghapp.simulator.repositories import AUTHOR_EMAIL, AUTHOR_LOGIN, ZERO_SHA, CommitInfo

SENDER_ID = 583231  # the Octocat's user id on github.com


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
        "sender": sender_payload(html_url, api_url),
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


def repository_payload(
    repo: Repository, *, owner_id: int, html_url: str, api_url: str, pushed_at: int
) -> dict[str, Any]:
    host = urlsplit(html_url).netloc
    repo_api = f"{api_url}/repos/{repo.full_name}"
    return {
        "id": repo.id,
        "node_id": node_id("Repository", repo.id),
        "name": repo.name,
        "full_name": repo.full_name,
        "private": True,
        "owner": {
            "name": repo.owner,
            "login": repo.owner,
            "id": owner_id,
            "node_id": node_id("Organization", owner_id),
            "url": f"{api_url}/users/{repo.owner}",
            "html_url": f"{html_url}/{repo.owner}",
            "type": "Organization",
            "site_admin": False,
        },
        "html_url": f"{html_url}/{repo.full_name}",
        "description": None,
        "fork": False,
        "url": repo_api,
        "git_url": f"git://{host}/{repo.full_name}.git",
        "ssh_url": f"git@{host}:{repo.full_name}.git",
        "clone_url": repo.clone_url,
        "svn_url": f"{html_url}/{repo.full_name}",
        "created_at": pushed_at,
        "pushed_at": pushed_at,
        "size": 0,
        "visibility": "private",
        "archived": False,
        "disabled": False,
        "default_branch": repo.default_branch,
        "master_branch": repo.default_branch,
        "organization": repo.owner,
    }


def sender_payload(html_url: str, api_url: str) -> dict[str, Any]:
    return {
        "login": AUTHOR_LOGIN,
        "id": SENDER_ID,
        "node_id": node_id("User", SENDER_ID),
        "url": f"{api_url}/users/{AUTHOR_LOGIN}",
        "html_url": f"{html_url}/{AUTHOR_LOGIN}",
        "type": "User",
        "site_admin": False,
    }


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
