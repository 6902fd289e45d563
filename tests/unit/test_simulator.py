"""Tests for ghapp.simulator: token minting, git smart HTTP, push payloads, failure injection."""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from ghapp.simulator import GitHubSimulator, MintRecord, Repository, generate_app_key

APP_ID = "4242"
ZERO = "0" * 40


@pytest.fixture(scope="module")
def app_key() -> tuple[bytes, bytes]:
    return generate_app_key()


@pytest.fixture(scope="module")
def other_key() -> tuple[bytes, bytes]:
    return generate_app_key()


@pytest.fixture
def sim(app_key: tuple[bytes, bytes], tmp_path: Path) -> Iterator[GitHubSimulator]:
    with GitHubSimulator(APP_ID, app_key[1], tmp_path / "github") as simulator:
        simulator.add_installation(1)
        yield simulator


@pytest.fixture
def repo(sim: GitHubSimulator) -> Repository:
    return sim.create_repository("octo-org/hello", installation_id=1, files={"README.md": "hi\n"})


def make_jwt(private_pem: bytes, **overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"iat": now - 30, "exp": now + 540, "iss": APP_ID}
    claims.update(overrides)
    # PyJWS rather than jwt.encode: the latter refuses integer "iss", which GitHub accepts.
    return jwt.PyJWS().encode(json.dumps(claims).encode(), private_pem, algorithm="RS256")


def post_token(
    sim: GitHubSimulator, token: str, installation_id: int = 1, **body: Any
) -> requests.Response:
    return requests.post(
        f"{sim.api_url}/app/installations/{installation_id}/access_tokens",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"},
        json=body or None,
        timeout=10,
    )


def mint(sim: GitHubSimulator, private_pem: bytes, installation_id: int = 1, **body: Any) -> str:
    response = post_token(sim, make_jwt(private_pem), installation_id, **body)
    assert response.status_code == 201, response.text
    return response.json()["token"]


def git(
    *args: str, token: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0")
    config = ["-c", "credential.helper=", "-c", "init.defaultBranch=main"]
    if token is not None:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        config += ["-c", f"http.extraHeader=Authorization: Basic {basic}"]
    return subprocess.run(
        ["git", *config, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=30
    )


# Token minting --------------------------------------------------------------------------


def test_valid_jwt_mints_a_token(sim: GitHubSimulator, repo: Repository, app_key) -> None:
    sim.token_lifetime = 1800
    response = post_token(sim, make_jwt(app_key[0]))

    assert response.status_code == 201
    assert "Date" in response.headers
    body = response.json()
    assert re.fullmatch(r"ghs_[A-Za-z0-9]{36}", body["token"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["expires_at"])
    assert body["permissions"] == {"contents": "read", "metadata": "read"}
    assert body["repository_selection"] == "selected"
    assert body["repositories"][0] | {"node_id": None} == {
        "id": repo.id,
        "node_id": None,
        "name": "hello",
        "full_name": "octo-org/hello",
        "private": True,
    }

    [record] = sim.issued_tokens
    assert isinstance(record, MintRecord)
    assert record.token == body["token"]
    assert record.token not in repr(record)
    assert record.installation_id == 1
    assert record.repository_ids is None
    assert record.jwt_claims["iss"] == APP_ID
    assert record.expires_at.tzinfo is not None
    assert abs(record.expires_at.timestamp() - (time.time() + 1800)) < 5
    assert body["expires_at"] == record.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_api_is_also_served_at_the_root_and_accepts_integer_iss(
    sim: GitHubSimulator, app_key
) -> None:
    response = requests.post(
        f"{sim.url}/app/installations/1/access_tokens",
        headers={"Authorization": f"Bearer {make_jwt(app_key[0], iss=int(APP_ID))}"},
        timeout=10,
    )
    assert response.status_code == 201
    assert sim.requests[-1].path == "/app/installations/1/access_tokens"


@pytest.mark.parametrize(
    ("case", "overrides"),
    [
        ("wrong key", {}),
        ("wrong iss", {"iss": "4243"}),
        ("integer-looking iss that is a different string", {"iss": "04242"}),
        ("wrong integer iss", {"iss": 4243}),
        ("non-numeric iss", {"iss": "my-app"}),
        ("lifetime over 600 s", {"iat": int(time.time()) - 10, "exp": int(time.time()) + 591}),
        ("expired", {"iat": int(time.time()) - 500, "exp": int(time.time()) - 5}),
        ("iat in the future", {"iat": int(time.time()) + 300, "exp": int(time.time()) + 600}),
    ],
)
def test_bad_jwt_is_refused_with_401(
    sim: GitHubSimulator, app_key, other_key, case: str, overrides: dict[str, Any]
) -> None:
    key = other_key[0] if case == "wrong key" else app_key[0]
    response = post_token(sim, make_jwt(key, **overrides))

    assert response.status_code == 401, case
    assert response.json()["documentation_url"] == "https://docs.github.com/rest"
    assert response.json()["message"]
    assert sim.issued_tokens == []


def test_jwt_error_messages_follow_github(sim: GitHubSimulator, app_key, other_key) -> None:
    now = int(time.time())
    too_long = post_token(sim, make_jwt(app_key[0], iat=now - 10, exp=now + 600))
    assert too_long.json()["message"] == (
        "'Expiration time' claim ('exp') is too far in the future"
    )
    future = post_token(sim, make_jwt(app_key[0], iat=now + 120, exp=now + 300))
    assert future.json()["message"].startswith("'Issued at' claim ('iat') must be an Integer")
    bad_signature = post_token(sim, make_jwt(other_key[0]))
    assert bad_signature.json()["message"] == "A JSON web token could not be decoded"
    garbage = post_token(sim, "not.a.jwt")
    assert garbage.json()["message"] == "A JSON web token could not be decoded"
    hs256 = jwt.encode({"iat": now, "exp": now + 60, "iss": APP_ID}, "secret" * 6, "HS256")
    assert post_token(sim, hs256).status_code == 401
    missing = requests.post(f"{sim.api_url}/app/installations/1/access_tokens", timeout=10)
    assert missing.status_code == 401


def test_unknown_suspended_and_deleted_installations(sim: GitHubSimulator, app_key) -> None:
    assert post_token(sim, make_jwt(app_key[0]), installation_id=99).status_code == 404
    assert post_token(sim, make_jwt(app_key[0]), 99).json()["message"] == "Not Found"

    sim.add_installation(2, account="other-org", suspended=True)
    suspended = post_token(sim, make_jwt(app_key[0]), installation_id=2)
    assert suspended.status_code == 403
    assert suspended.json()["message"] == "This installation has been suspended"

    sim.delete_installation(1)
    assert post_token(sim, make_jwt(app_key[0]), installation_id=1).status_code == 404


def test_token_scoping_by_repository_and_permissions(
    sim: GitHubSimulator, repo: Repository, app_key
) -> None:
    sim.add_installation(2, account="other-org")
    foreign = sim.create_repository("other-org/secret", installation_id=2, files={"a": "b"})
    other = sim.create_repository("octo-org/other", installation_id=1, files={"a": "b"})

    outside = post_token(sim, make_jwt(app_key[0]), repository_ids=[foreign.id])
    assert outside.status_code == 422
    assert outside.json()["message"].startswith("There is at least one repository")
    assert post_token(sim, make_jwt(app_key[0]), repositories=["secret"]).status_code == 422
    write = post_token(sim, make_jwt(app_key[0]), permissions={"contents": "write"})
    assert write.status_code == 422
    issues = post_token(sim, make_jwt(app_key[0]), permissions={"issues": "read"})
    assert issues.status_code == 422

    scoped = post_token(
        sim, make_jwt(app_key[0]), repositories=["hello"], permissions={"contents": "read"}
    )
    assert scoped.status_code == 201
    assert [r["full_name"] for r in scoped.json()["repositories"]] == ["octo-org/hello"]
    assert sim.issued_tokens[-1].repository_ids == (repo.id,)
    assert sim.issued_tokens[-1].permissions == {"contents": "read", "metadata": "read"}
    assert 1000 <= repo.id < foreign.id < other.id


# Git over smart HTTP --------------------------------------------------------------------


def test_clone_and_fetch_an_older_sha_after_the_branch_moved(
    sim: GitHubSimulator, repo: Repository, app_key, tmp_path: Path
) -> None:
    first = sim.branch_tip(repo.full_name, "main")
    second = sim.commit(repo.full_name, files={"a.txt": "x\n"}, message="add a")
    assert sim.branch_tip(repo.full_name, "main") == second
    token = mint(sim, app_key[0])

    clone = git("clone", "-q", repo.clone_url, str(tmp_path / "clone"), token=token)
    assert clone.returncode == 0, clone.stderr
    assert (tmp_path / "clone" / "a.txt").read_text() == "x\n"
    head = git("rev-parse", "HEAD", cwd=tmp_path / "clone").stdout.strip()
    assert head == second

    sim.commit(repo.full_name, files={"a.txt": "y\n"}, message="move on")
    work = tmp_path / "work"
    assert git("init", "-q", str(work)).returncode == 0
    fetch = git("fetch", "-q", "--depth", "1", repo.clone_url, first, token=token, cwd=work)
    assert fetch.returncode == 0, fetch.stderr
    assert git("rev-parse", "FETCH_HEAD", cwd=work).stdout.strip() == first
    posts = [r for r in sim.requests if r.path.endswith("/git-upload-pack")]
    assert posts and all(r.status == 200 for r in posts)


def test_git_without_or_with_bad_token_gets_401(
    sim: GitHubSimulator, repo: Repository, app_key, tmp_path: Path
) -> None:
    no_token = git("ls-remote", repo.clone_url)
    assert no_token.returncode != 0
    bad = git("ls-remote", repo.clone_url, token="ghs_" + "x" * 36)
    assert bad.returncode != 0

    sim.create_repository("octo-org/other", installation_id=1, files={"a": "b"})
    other_only = mint(sim, app_key[0], repositories=["other"])
    assert git("ls-remote", repo.clone_url, token=other_only).returncode != 0

    sim.token_lifetime = 0
    expired = mint(sim, app_key[0])
    assert git("ls-remote", repo.clone_url, token=expired).returncode != 0

    refused = [r for r in sim.requests if r.path == "/octo-org/hello.git/info/refs"]
    assert len(refused) == 4
    assert all(r.status == 401 for r in refused)
    answer = requests.get(f"{repo.clone_url}/info/refs?service=git-upload-pack", timeout=10)
    assert answer.headers["WWW-Authenticate"] == 'Basic realm="GitHub"'


def test_receive_pack_unknown_repo_and_unknown_paths(
    sim: GitHubSimulator, repo: Repository, app_key
) -> None:
    auth = ("x-access-token", mint(sim, app_key[0]))
    push = requests.get(
        f"{repo.clone_url}/info/refs?service=git-receive-pack", auth=auth, timeout=10
    )
    assert push.status_code == 403
    refs = requests.get(
        f"{repo.clone_url}/info/refs?service=git-upload-pack", auth=auth, timeout=10
    )
    assert refs.status_code == 200
    assert refs.headers["Content-Type"] == "application/x-git-upload-pack-advertisement"
    missing = requests.get(
        f"{sim.url}/octo-org/nope.git/info/refs?service=git-upload-pack", auth=auth, timeout=10
    )
    assert missing.status_code == 404
    other = requests.get(f"{sim.api_url}/repos/octo-org/hello", timeout=10)
    assert other.status_code == 404
    assert other.json()["message"] == "Not Found"
    assert "Date" in other.headers


def test_upload_pack_accepts_chunked_and_gzip_bodies(
    sim: GitHubSimulator, repo: Repository, app_key
) -> None:
    auth = ("x-access-token", mint(sim, app_key[0]))
    ls_refs = b"0014command=ls-refs\n00010000"
    headers = {
        "Git-Protocol": "version=2",
        "Content-Type": "application/x-git-upload-pack-request",
    }
    tip = sim.branch_tip(repo.full_name).encode()
    chunked = requests.post(
        f"{repo.clone_url}/git-upload-pack",
        data=iter([ls_refs[:9], ls_refs[9:]]),
        headers=headers,
        auth=auth,
        timeout=10,
    )
    assert chunked.request.headers["Transfer-Encoding"] == "chunked"
    assert chunked.status_code == 200 and tip + b" refs/heads/main" in chunked.content
    gzipped = requests.post(
        f"{repo.clone_url}/git-upload-pack",
        data=gzip.compress(ls_refs),
        headers={**headers, "Content-Encoding": "gzip"},
        auth=auth,
        timeout=10,
    )
    assert gzipped.status_code == 200 and tip + b" refs/heads/main" in gzipped.content


def test_concurrent_mints_and_fetches(sim: GitHubSimulator, repo: Repository, app_key) -> None:
    def mint_and_list(_: int) -> int:
        token = mint(sim, app_key[0])
        return git("ls-remote", repo.clone_url, "refs/heads/main", token=token).returncode

    with ThreadPoolExecutor(max_workers=10) as pool:
        assert list(pool.map(mint_and_list, range(10))) == [0] * 10
    assert len({r.token for r in sim.issued_tokens}) == 10


# Repositories and payloads --------------------------------------------------------------


def test_commit_branches_and_speed(sim: GitHubSimulator, repo: Repository) -> None:
    base = sim.branch_tip(repo.full_name)
    started = time.perf_counter()
    for i in range(10):
        sim.commit(repo.full_name, files={f"f{i}.txt": str(i)}, message=f"c{i}")
    assert (time.perf_counter() - started) / 10 < 0.1

    feature = sim.commit(
        repo.full_name, files={"b.bin": b"\x00\x01"}, branch="feature", delete=["README.md"]
    )
    assert sim.branch_tip(repo.full_name, "feature") == feature
    payload = sim.push_payload(repo.full_name, None, feature, ref="refs/heads/feature")
    assert payload["created"] is True
    assert [c["id"] for c in payload["commits"]] == [feature]
    assert payload["commits"][0]["added"] == ["b.bin"]
    assert payload["commits"][0]["removed"] == ["README.md"]
    assert base != feature


def test_push_payload_shape(sim: GitHubSimulator, repo: Repository) -> None:
    before = sim.branch_tip(repo.full_name, "main")
    one = sim.commit(repo.full_name, files={"a.txt": "1"}, message="first\n\nbody")
    two = sim.commit(repo.full_name, files={"README.md": "changed"}, delete=["a.txt"])

    payload = sim.push_payload(repo.full_name, before, two)
    assert payload["ref"] == "refs/heads/main"
    assert (payload["before"], payload["after"]) == (before, two)
    assert payload["created"] is payload["deleted"] is payload["forced"] is False
    assert payload["base_ref"] is None
    assert payload["compare"].endswith(f"/compare/{before[:12]}...{two[:12]}")
    assert [c["id"] for c in payload["commits"]] == [one, two]
    first, second = payload["commits"]
    assert first["message"] == "first\n\nbody"
    assert first["added"] == ["a.txt"] and first["modified"] == []
    assert second["removed"] == ["a.txt"] and second["modified"] == ["README.md"]
    assert re.fullmatch(r"[0-9a-f]{40}", first["tree_id"])
    assert first["author"]["username"] == "octocat" and first["distinct"] is True
    datetime.fromisoformat(first["timestamp"])
    assert payload["head_commit"]["id"] == two

    repository = payload["repository"]
    assert repository["id"] == repo.id and repository["full_name"] == "octo-org/hello"
    assert repository["private"] is True and repository["default_branch"] == "main"
    assert repository["owner"]["login"] == "octo-org"
    assert repository["owner"]["type"] == "Organization"
    assert repository["clone_url"] == repo.clone_url
    assert repository["url"] == f"{sim.api_url}/repos/octo-org/hello"
    assert payload["installation"]["id"] == 1 and payload["installation"]["node_id"]
    assert payload["sender"]["type"] == "User" and payload["pusher"]["name"]
    assert (
        sim.push_payload(repo.full_name, before, two, installation_id=7)["installation"]["id"] == 7
    )

    rewound = sim.push_payload(repo.full_name, two, before)
    assert rewound["forced"] is True and rewound["commits"] == []

    deleted = sim.push_payload(repo.full_name, two, ZERO)
    assert deleted["deleted"] is True and deleted["after"] == ZERO
    assert deleted["commits"] == [] and deleted["head_commit"] is None


# Failure injection and lifecycle --------------------------------------------------------


def test_inject_failure_applies_once_then_normal(sim: GitHubSimulator, app_key) -> None:
    sim.inject_failure(
        "POST", "/api/v3/app/installations", 503, headers={"Retry-After": "1"}, body={"m": 1}
    )
    failed = post_token(sim, make_jwt(app_key[0]))
    assert failed.status_code == 503
    assert failed.headers["Retry-After"] == "1" and failed.json() == {"m": 1}
    assert post_token(sim, make_jwt(app_key[0])).status_code == 201
    assert [r.status for r in sim.requests] == [503, 201]

    sim.inject_failure("GET", "/octo-org/hello.git", 500, times=2)
    url = f"{sim.url}/octo-org/hello.git/info/refs?service=git-upload-pack"
    assert [requests.get(url, timeout=10).status_code for _ in range(3)] == [500, 500, 404]


def test_lifecycle(app_key, tmp_path: Path) -> None:
    simulator = GitHubSimulator(APP_ID, app_key[1], tmp_path / "gh")
    with pytest.raises(RuntimeError):
        _ = simulator.url
    assert simulator.start() is simulator
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", simulator.url)
    assert simulator.api_url == simulator.url + "/api/v3"
    url = simulator.url
    simulator.stop()
    simulator.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=2)
