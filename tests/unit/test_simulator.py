"""Tests for ghapp.simulator: token minting, git smart HTTP, push payloads, failure injection,
webhook deliveries and the simulated clock."""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from ghapp.simulator import (
    GitHubSimulator,
    HookDelivery,
    MintRecord,
    Repository,
    generate_app_key,
)
from tests.support import HookReceiver

APP_ID = "4242"
ZERO = "0" * 40


@pytest.fixture(scope="module")
def other_key() -> tuple[bytes, bytes]:
    return generate_app_key()


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
    # Without "permissions" in the body a token gets all of the App's permissions.
    assert body["permissions"] == {
        "contents": "read",
        "checks": "write",
        "statuses": "write",
        "metadata": "read",
    }
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
        # Times relative to when the test runs (a long suite runs it minutes after collection).
        ("lifetime over 600 s", {"iat": -10, "exp": 591}),
        ("expired", {"iat": -500, "exp": -5}),
        ("iat in the future", {"iat": 300, "exp": 600}),
    ],
)
def test_bad_jwt_is_refused_with_401(
    sim: GitHubSimulator, app_key, other_key, case: str, overrides: dict[str, Any]
) -> None:
    key = other_key[0] if case == "wrong key" else app_key[0]
    now = int(time.time())
    claims = {k: now + v if k in ("iat", "exp") else v for k, v in overrides.items()}
    response = post_token(sim, make_jwt(key, **claims))

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
    assert posts
    assert all(r.status == 200 for r in posts)


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
    assert chunked.status_code == 200
    assert tip + b" refs/heads/main" in chunked.content
    gzipped = requests.post(
        f"{repo.clone_url}/git-upload-pack",
        data=gzip.compress(ls_refs),
        headers={**headers, "Content-Encoding": "gzip"},
        auth=auth,
        timeout=10,
    )
    assert gzipped.status_code == 200
    assert tip + b" refs/heads/main" in gzipped.content


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
    assert first["added"] == ["a.txt"]
    assert first["modified"] == []
    assert second["removed"] == ["a.txt"]
    assert second["modified"] == ["README.md"]
    assert re.fullmatch(r"[0-9a-f]{40}", first["tree_id"])
    assert first["author"]["username"] == "octocat"
    assert first["distinct"] is True
    datetime.fromisoformat(first["timestamp"])
    assert payload["head_commit"]["id"] == two

    repository = payload["repository"]
    assert repository["id"] == repo.id
    assert repository["full_name"] == "octo-org/hello"
    assert repository["private"] is True
    assert repository["default_branch"] == "main"
    assert repository["owner"]["login"] == "octo-org"
    assert repository["owner"]["type"] == "Organization"
    assert repository["clone_url"] == repo.clone_url
    assert repository["url"] == f"{sim.api_url}/repos/octo-org/hello"
    # GitHub's full repository object (about 80 fields, most of them API URL templates), and
    # full account objects: a benchmark on a smaller payload would flatter any JSON handling.
    assert len(repository) >= 80
    assert repository["keys_url"] == f"{sim.api_url}/repos/octo-org/hello/keys{{/key_id}}"
    assert repository["created_at"] == repository["pushed_at"]
    assert isinstance(repository["pushed_at"], int)
    assert repository["owner"]["repos_url"] == f"{sim.api_url}/users/octo-org/repos"
    assert payload["organization"]["login"] == "octo-org"
    assert payload["installation"]["id"] == 1
    assert payload["installation"]["node_id"]
    assert payload["sender"]["type"] == "User"
    assert payload["pusher"]["name"]
    assert payload["sender"]["following_url"].endswith("/users/octocat/following{/other_user}")
    assert (
        sim.push_payload(repo.full_name, before, two, installation_id=7)["installation"]["id"] == 7
    )

    rewound = sim.push_payload(repo.full_name, two, before)
    assert rewound["forced"] is True
    assert rewound["commits"] == []

    deleted = sim.push_payload(repo.full_name, two, ZERO)
    assert deleted["deleted"] is True
    assert deleted["after"] == ZERO
    assert deleted["commits"] == []
    assert deleted["head_commit"] is None


# Failure injection and lifecycle --------------------------------------------------------


def test_inject_failure_applies_once_then_normal(sim: GitHubSimulator, app_key) -> None:
    sim.inject_failure(
        "POST", "/api/v3/app/installations", 503, headers={"Retry-After": "1"}, body={"m": 1}
    )
    failed = post_token(sim, make_jwt(app_key[0]))
    assert failed.status_code == 503
    assert failed.headers["Retry-After"] == "1"
    assert failed.json() == {"m": 1}
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


# Webhook deliveries ---------------------------------------------------------------------

SECRET = b"It's a Secret to Everybody"
DELIVERY_KEYS = {
    "id",
    "guid",
    "delivered_at",
    "redelivery",
    "duration",
    "status",
    "status_code",
    "event",
    "action",
    "installation_id",
    "repository_id",
    "throttled_at",
}


@pytest.fixture
def receiver() -> Iterator[HookReceiver]:
    server = HookReceiver(busy_first=True)
    yield server
    server.close()


def api_get(url: str, token: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(url, headers=headers, timeout=10)


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def assert_signed(headers: dict[str, str], body: bytes) -> None:
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Hub-Signature-256"], expected)


def test_send_list_page_and_redeliver_webhooks(
    sim: GitHubSimulator, repo: Repository, app_key, receiver: HookReceiver
) -> None:
    sim.webhook_url, sim.webhook_secret = receiver.url, SECRET
    push = sim.push_payload(repo.full_name, None, sim.branch_tip(repo.full_name))
    failed = sim.send_webhook("push", push, guid="guid-1")
    installed = sim.send_webhook("installation", {"action": "created", "installation": {"id": 1}})

    assert isinstance(failed, HookDelivery)
    assert (failed.status, failed.status_code, failed.redelivery) == (
        "Invalid HTTP Response: 503",
        503,
        False,
    )
    assert (failed.event, failed.action, failed.guid) == ("push", None, "guid-1")
    assert (failed.installation_id, failed.repository_id) == (1, repo.id)
    assert failed.delivered_at.tzinfo is not None
    assert failed.duration >= 0
    assert (installed.status, installed.status_code, installed.action) == ("OK", 200, "created")
    assert installed.repository_id is None
    assert installed.id > failed.id
    assert re.fullmatch(r"[0-9a-f-]{36}", installed.guid)
    assert sim.hook_deliveries == [failed, installed]

    headers, body = receiver.received[0]
    assert json.loads(body) == push
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Github-Event"] == "push"
    assert headers["X-Github-Delivery"] == "guid-1"
    assert headers["X-Github-Hook-Installation-Target-Type"] == "integration"
    assert headers["X-Github-Hook-Installation-Target-Id"] == APP_ID
    assert headers["X-Github-Hook-Id"].isdigit()
    assert headers["User-Agent"].startswith("GitHub-Hookshot/")
    assert_signed(headers, body)

    token = make_jwt(app_key[0])
    first_page = api_get(f"{sim.api_url}/app/hook/deliveries?per_page=1", token)
    assert first_page.status_code == 200
    [newest] = first_page.json()
    assert set(newest) == DELIVERY_KEYS
    assert newest["id"] == installed.id
    assert newest["throttled_at"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", newest["delivered_at"])
    next_url = first_page.links["next"]["url"]
    assert next_url.startswith(f"{sim.api_url}/app/hook/deliveries?")
    second_page = api_get(next_url, token)
    assert [d["id"] for d in second_page.json()] == [failed.id]
    assert second_page.json()[0]["status"] == "Invalid HTTP Response: 503"
    assert "next" not in second_page.links

    one = api_get(f"{sim.api_url}/app/hook/deliveries/{failed.id}", token)
    assert one.status_code == 200
    assert one.json()["guid"] == "guid-1"
    assert one.json()["request"]["payload"] == push
    assert api_get(f"{sim.api_url}/app/hook/deliveries/1", token).status_code == 404

    attempt = requests.post(
        f"{sim.api_url}/app/hook/deliveries/{failed.id}/attempts",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert attempt.status_code == 202
    assert attempt.json() == {}
    wait_for(lambda: len(sim.hook_deliveries) == 3)
    again = sim.hook_deliveries[-1]
    assert (again.guid, again.redelivery, again.status, again.status_code) == (
        "guid-1",
        True,
        "OK",
        200,
    )
    assert again.event == "push"
    assert again.id > installed.id
    assert sim.redelivery_requests == [failed.id]
    headers, redelivered_body = receiver.received[-1]
    assert headers["X-Github-Delivery"] == "guid-1"
    assert redelivered_body == body
    assert_signed(headers, redelivered_body)

    unknown = requests.post(
        f"{sim.url}/app/hook/deliveries/1/attempts",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert unknown.status_code == 404
    everything = api_get(f"{sim.url}/app/hook/deliveries", token)
    assert [d["id"] for d in everything.json()] == [again.id, installed.id, failed.id]
    assert everything.json()[0]["redelivery"] is True
    assert "Link" not in everything.headers


def test_unreachable_webhook_url_is_recorded_not_raised(sim: GitHubSimulator) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sim.webhook_url = f"http://127.0.0.1:{port}/webhook"
    refused = sim.send_webhook("ping", {"zen": "Keep it logically awesome."})
    assert refused.status != "OK"
    assert refused.status_code == 0
    sim.webhook_url = None
    unset = sim.send_webhook("ping", {})
    assert unset.status != "OK"
    assert unset.status_code == 0
    assert sim.hook_deliveries == [refused, unset]


def test_hook_endpoints_require_an_app_jwt(sim: GitHubSimulator, app_key, other_key) -> None:
    sim.send_webhook("ping", {})
    [delivery] = sim.hook_deliveries
    paths = ["/app/hook/deliveries", f"/app/hook/deliveries/{delivery.id}"]
    for path in paths:
        missing = api_get(sim.api_url + path, None)
        assert missing.status_code == 401
        assert missing.json()["message"] == "Requires authentication"
        assert api_get(sim.url + path, make_jwt(other_key[0])).status_code == 401
    attempts = f"{sim.api_url}/app/hook/deliveries/{delivery.id}/attempts"
    assert requests.post(attempts, timeout=10).status_code == 401
    assert sim.redelivery_requests == []
    assert api_get(sim.api_url + paths[0], make_jwt(app_key[0])).status_code == 200


# Simulated clock ------------------------------------------------------------------------


def test_simulator_clock_ahead_refuses_a_real_time_jwt_as_expired(
    sim: GitHubSimulator, repo: Repository, app_key
) -> None:
    sim.clock_offset = 3600
    refused = post_token(sim, make_jwt(app_key[0]))
    assert refused.status_code == 401
    assert "('exp')" in refused.json()["message"]
    skew = parsedate_to_datetime(refused.headers["Date"]).timestamp() - time.time()
    assert abs(skew - 3600) < 5
    deliveries = api_get(f"{sim.api_url}/app/hook/deliveries", make_jwt(app_key[0]))
    assert deliveries.status_code == 401

    now = int(time.time()) + 3600
    token = post_token(sim, make_jwt(app_key[0], iat=now - 30, exp=now + 540))
    assert token.status_code == 201
    expires_at = datetime.fromisoformat(token.json()["expires_at"].replace("Z", "+00:00"))
    assert abs(expires_at.timestamp() - (time.time() + 7200)) < 5
    assert git("ls-remote", repo.clone_url, token=token.json()["token"]).returncode == 0
    sim.clock_offset = 3600 * 3
    assert git("ls-remote", repo.clone_url, token=token.json()["token"]).returncode != 0


def test_simulator_clock_behind_refuses_a_real_time_jwt_as_not_yet_issued(
    sim: GitHubSimulator, app_key
) -> None:
    sim.clock_offset = -3600
    refused = post_token(sim, make_jwt(app_key[0]))
    assert refused.status_code == 401
    assert "('iat')" in refused.json()["message"]
    skew = parsedate_to_datetime(refused.headers["Date"]).timestamp() - time.time()
    assert abs(skew + 3600) < 5
    sim.clock_offset = 0
    assert post_token(sim, make_jwt(app_key[0])).status_code == 201
