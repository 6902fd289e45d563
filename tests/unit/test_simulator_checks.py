"""Tests for the simulator's Checks and commit statuses APIs, the App's configurable
permissions and the check_run / check_suite webhook payloads, over real HTTP."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jwt
import pytest
import requests

from ghapp.simulator import GitHubSimulator, Repository

APP_ID = "4242"
NOT_ACCESSIBLE = "Resource not accessible by integration"
NOT_GRANTED = "The permissions requested are not granted to this installation."


def make_jwt(private_pem: bytes) -> str:
    now = int(time.time())
    claims = {"iat": now - 30, "exp": now + 540, "iss": APP_ID}
    return jwt.PyJWS().encode(json.dumps(claims).encode(), private_pem, algorithm="RS256")


def post_token(sim: GitHubSimulator, private_pem: bytes, **body: Any) -> requests.Response:
    return requests.post(
        f"{sim.api_url}/app/installations/1/access_tokens",
        headers={"Authorization": f"Bearer {make_jwt(private_pem)}"},
        json=body or None,
        timeout=10,
    )


def mint(sim: GitHubSimulator, private_pem: bytes, **body: Any) -> str:
    response = post_token(sim, private_pem, **body)
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


# The App's permissions ------------------------------------------------------------------


def test_tokens_get_the_apps_permissions_or_lower_levels_of_them(
    sim: GitHubSimulator, repo: Repository, app_key
) -> None:
    assert sim.app_permissions == {
        "contents": "read",
        "checks": "write",
        "statuses": "write",
        "metadata": "read",
    }
    everything = post_token(sim, app_key[0])
    assert everything.json()["permissions"] == sim.app_permissions

    lower = post_token(sim, app_key[0], permissions={"checks": "read"})
    assert lower.status_code == 201
    assert lower.json()["permissions"] == {"metadata": "read", "checks": "read"}
    for too_much in ({"checks": "admin"}, {"contents": "write"}, {"issues": "read"}):
        refused = post_token(sim, app_key[0], permissions=too_much)
        assert refused.status_code == 422, too_much
        assert refused.json()["message"] == NOT_GRANTED


def test_an_app_without_the_checks_permission_cannot_mint_a_token_with_it(
    sim: GitHubSimulator, repo: Repository, app_key
) -> None:
    sim.app_permissions = {"contents": "read", "metadata": "read"}

    refused = post_token(sim, app_key[0], permissions={"checks": "write"})

    assert refused.status_code == 422
    assert refused.json()["message"] == NOT_GRANTED
    assert "checks" not in post_token(sim, app_key[0]).json()["permissions"]
    with pytest.raises(ValueError, match="level must be one of"):
        sim.app_permissions = {"checks": "everything"}


# Check runs -----------------------------------------------------------------------------


def auth(token: str, scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {token}", "Accept": "application/vnd.github+json"}


def check_runs_url(sim: GitHubSimulator, full_name: str = "octo-org/hello") -> str:
    return f"{sim.api_url}/repos/{full_name}/check-runs"


def annotation(line: int, **extra: Any) -> dict[str, Any]:
    return {
        "path": "README.md",
        "start_line": line,
        "end_line": line,
        "annotation_level": "warning",
        "message": f"look at line {line}",
        **extra,
    }


def create_run(sim: GitHubSimulator, token: str, **body: Any) -> requests.Response:
    body.setdefault("name", "ghapp")
    body.setdefault("head_sha", sim.branch_tip("octo-org/hello"))
    return requests.post(check_runs_url(sim), headers=auth(token), json=body, timeout=10)


def patch_run(sim: GitHubSimulator, token: str, run_id: int, **body: Any) -> requests.Response:
    url = f"{check_runs_url(sim)}/{run_id}"
    return requests.patch(url, headers=auth(token), json=body, timeout=10)


def test_a_check_run_is_created_updated_and_completed(
    sim: GitHubSimulator, repo: Repository, app_key
) -> None:
    token = mint(sim, app_key[0])
    sha = sim.branch_tip(repo.full_name)

    created = create_run(
        sim,
        token,
        external_id="job-7",
        output={"title": "Checking", "summary": "started", "annotations": [annotation(1)]},
    )

    assert created.status_code == 201, created.text
    run = created.json()
    run_url = f"{sim.api_url}/repos/octo-org/hello/check-runs/{run['id']}"
    assert run["name"] == "ghapp"
    assert run["head_sha"] == sha
    assert run["external_id"] == "job-7"
    assert (run["status"], run["conclusion"], run["completed_at"]) == ("queued", None, None)
    assert run["started_at"].endswith("Z")
    assert run["url"] == run_url
    assert run["output"] == {
        "title": "Checking",
        "summary": "started",
        "text": None,
        "annotations_count": 1,
        "annotations_url": f"{run_url}/annotations",
    }
    assert run["app"]["id"] == int(APP_ID)
    assert run["check_suite"]["id"] != run["id"]
    assert run["pull_requests"] == []

    # Served at the root too, like the rest of the API; "token" works as the scheme as well.
    at_root = f"{sim.url}/repos/octo-org/hello/check-runs/{run['id']}"
    progress = requests.patch(
        at_root, headers=auth(token, "token"), json={"status": "in_progress"}, timeout=10
    )
    assert progress.status_code == 200, progress.text
    assert progress.json()["status"] == "in_progress"

    done = patch_run(
        sim,
        token,
        run["id"],
        conclusion="failure",
        details_url="https://ci.example/7",
        output={
            "title": "2 problems",
            "summary": "done",
            "text": "details",
            "annotations": [annotation(2)],
        },
    )

    assert done.status_code == 200, done.text
    finished = done.json()
    assert (finished["status"], finished["conclusion"]) == ("completed", "failure")
    assert finished["completed_at"].endswith("Z")
    assert finished["details_url"] == "https://ci.example/7"
    assert finished["output"]["title"] == "2 problems"
    assert finished["output"]["summary"] == "done"
    assert finished["output"]["text"] == "details"
    assert finished["output"]["annotations_count"] == 2
    fetched = requests.get(run_url, headers=auth(token), timeout=10)
    assert fetched.json() == finished
    assert sim.check_runs(repo.full_name) == [finished]
    assert sim.check_runs(repo.full_name, sha=sha) == [finished]


def test_annotations_are_appended_across_patches_and_at_most_50_go_in_one_request(
    sim: GitHubSimulator, repo: Repository, app_key
) -> None:
    token = mint(sim, app_key[0])
    summary = {"title": "lint", "summary": "findings"}
    run_id = create_run(sim, token, output={**summary, "annotations": [annotation(1)]}).json()["id"]

    for batch in ([annotation(2), annotation(3)], [annotation(4, start_column=1, end_column=5)]):
        patched = patch_run(sim, token, run_id, output={"summary": "more", "annotations": batch})
        assert patched.status_code == 200, patched.text
    too_many = patch_run(
        sim, token, run_id, output={"summary": "x", "annotations": [annotation(9)] * 51}
    )

    assert too_many.status_code == 422
    assert too_many.json()["message"] == (
        "Invalid request.\n\nNo more than 50 items are allowed; 51 were supplied."
    )
    listed = requests.get(f"{check_runs_url(sim)}/{run_id}/annotations", headers=auth(token))
    assert [a["start_line"] for a in listed.json()] == [1, 2, 3, 4]
    assert listed.json()[3]["start_column"] == 1
    assert listed.json()[0]["blob_href"].endswith(f"/blob/{repo_sha(sim)}/README.md")
    assert sim.check_run_annotations(repo.full_name, run_id) == listed.json()
    [run] = sim.check_runs(repo.full_name)
    assert run["output"]["annotations_count"] == 4
    assert run["output"]["title"] == "lint"  # an update without a title keeps it
    exactly_50 = patch_run(
        sim, token, run_id, output={"summary": "x", "annotations": [annotation(9)] * 50}
    )
    assert exactly_50.status_code == 200
    assert exactly_50.json()["output"]["annotations_count"] == 54
    on_create = create_run(sim, token, output={**summary, "annotations": [annotation(1)] * 51})
    assert on_create.status_code == 422


def repo_sha(sim: GitHubSimulator) -> str:
    return sim.branch_tip("octo-org/hello")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": None}, 'Invalid request.\n\n"name" wasn\'t supplied.'),
        (
            {"conclusion": "stale"},
            "Invalid request.\n\nFor 'properties/conclusion', \"stale\" is not a member of "
            '["action_required", "cancelled", "failure", "neutral", "success", "skipped", '
            '"timed_out"].',
        ),
        (
            {"status": "done"},
            "Invalid request.\n\nFor 'properties/status', \"done\" is not a member of "
            '["queued", "in_progress", "completed"].',
        ),
        (
            {"output": {"title": "t", "summary": "s" * 65536}},
            "Invalid request.\n\nOnly 65535 characters are allowed; 65536 were supplied.",
        ),
        (
            {"output": {"title": "t", "summary": "s", "text": "t" * 65536}},
            "Invalid request.\n\nOnly 65535 characters are allowed; 65536 were supplied.",
        ),
        ({"output": {"title": "t"}}, 'Invalid request.\n\n"summary" wasn\'t supplied.'),
        (
            {
                "output": {
                    "title": "t",
                    "summary": "s",
                    "annotations": [{"path": "a", "start_line": 1, "end_line": 1, "message": "m"}],
                }
            },
            'Invalid request.\n\n"annotation_level" wasn\'t supplied.',
        ),
        (
            {"started_at": "yesterday"},
            "Invalid request.\n\nFor 'properties/started_at', \"yesterday\" is not a date-time.",
        ),
        ({"head_sha": "f" * 40}, f"No commit found for SHA: {'f' * 40}"),
    ],
)
def test_check_run_bodies_github_refuses_are_refused_with_its_words(
    sim: GitHubSimulator, repo: Repository, app_key, body: dict[str, Any], message: str
) -> None:
    token = mint(sim, app_key[0])
    full = {"name": "ghapp", "head_sha": repo_sha(sim), **body}
    full = {k: v for k, v in full.items() if v is not None}

    refused = requests.post(check_runs_url(sim), headers=auth(token), json=full, timeout=10)

    assert refused.status_code == 422, refused.text
    assert refused.json()["message"] == message
    assert sim.check_runs(repo.full_name) == []


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"status": "completed"}, "conclusion", "missing_field"),
        ({"completed_at": "2026-01-02T03:04:05Z"}, "conclusion", "missing_field"),
        ({"conclusion": "action_required"}, "details_url", "missing_field"),
        (
            {
                "output": {
                    "title": "t",
                    "summary": "s",
                    "annotations": [
                        {**annotation(1), "end_line": 2, "start_column": 1, "end_column": 3}
                    ],
                }
            },
            "annotations",
            "invalid",
        ),
        (
            {"output": {"title": "t", "summary": "é" * 40000}},  # 80,000 bytes, 40,000 characters
            "summary",
            "custom",
        ),
    ],
)
def test_check_runs_github_models_refuse_answer_validation_failed(
    sim: GitHubSimulator, repo: Repository, app_key, body: dict[str, Any], field: str, code: str
) -> None:
    token = mint(sim, app_key[0])

    refused = create_run(sim, token, **body)

    assert refused.status_code == 422, refused.text
    answer = refused.json()
    assert answer["message"] == "Validation Failed"
    assert [(e["resource"], e["field"], e["code"]) for e in answer["errors"]] == [
        ("CheckRun", field, code)
    ]
    assert sim.check_runs(repo.full_name) == []


def test_a_conclusion_completes_a_run_and_a_patch_cannot_complete_it_without_one(
    sim: GitHubSimulator, repo: Repository, app_key
) -> None:
    token = mint(sim, app_key[0])
    run = create_run(sim, token, status="queued", conclusion="success").json()
    assert (run["status"], run["conclusion"]) == ("completed", "success")
    assert run["completed_at"] is not None
    pending = create_run(sim, token, name="second").json()

    refused = patch_run(sim, token, pending["id"], status="completed")
    bad = patch_run(sim, token, pending["id"], conclusion="bogus")

    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "conclusion"
    assert bad.status_code == 422
    assert sim.check_runs(repo.full_name)[1]["status"] == "queued"
    timed = patch_run(
        sim, token, pending["id"], completed_at="2026-01-02T04:04:05+01:00", conclusion="skipped"
    )
    assert timed.json()["completed_at"] == "2026-01-02T03:04:05Z"


# Who may do what --------------------------------------------------------------------------


def test_a_token_without_checks_write_is_refused_with_githubs_message(
    sim: GitHubSimulator, repo: Repository, app_key
) -> None:
    writer = mint(sim, app_key[0])
    run_id = create_run(sim, writer).json()["id"]
    contents_only = mint(sim, app_key[0], permissions={"contents": "read"})
    reader = mint(sim, app_key[0], permissions={"checks": "read"})

    for token in (contents_only, reader):
        created = create_run(sim, token)
        patched = patch_run(sim, token, run_id, conclusion="success")
        assert (created.status_code, patched.status_code) == (403, 403)
        assert created.json()["message"] == NOT_ACCESSIBLE
        assert patched.json()["message"] == NOT_ACCESSIBLE
    # Reading needs checks:read; contents:read alone is not enough.
    run_url = f"{check_runs_url(sim)}/{run_id}"
    assert requests.get(run_url, headers=auth(reader), timeout=10).status_code == 200
    denied = requests.get(run_url, headers=auth(contents_only), timeout=10)
    assert denied.status_code == 403
    assert denied.json()["message"] == NOT_ACCESSIBLE
    assert [r["status"] for r in sim.check_runs(repo.full_name)] == ["queued"]


def test_bad_expired_and_foreign_tokens_are_refused(
    sim: GitHubSimulator, repo: Repository, app_key
) -> None:
    other = sim.create_repository("octo-org/other", installation_id=1, files={"a": "b"})
    sim.add_installation(2, account="elsewhere")
    sim.create_repository("elsewhere/theirs", installation_id=2, files={"a": "b"})
    token = mint(sim, app_key[0])
    run_id = create_run(sim, token).json()["id"]
    only_other = mint(sim, app_key[0], repository_ids=[other.id])

    unknown = create_run(sim, "ghs_" + "x" * 36)
    assert (unknown.status_code, unknown.json()["message"]) == (401, "Bad credentials")
    missing = requests.post(check_runs_url(sim), json={}, timeout=10)
    assert missing.status_code == 401
    narrowed = create_run(sim, only_other)
    assert (narrowed.status_code, narrowed.json()["message"]) == (404, "Not Found")
    theirs = requests.post(
        check_runs_url(sim, "elsewhere/theirs"),
        headers=auth(token),
        json={"name": "x", "head_sha": sim.branch_tip("elsewhere/theirs")},
        timeout=10,
    )
    assert theirs.status_code == 404
    # A run id of another repository is not found under this one.
    foreign_id = requests.patch(
        f"{check_runs_url(sim, 'octo-org/other')}/{run_id}",
        headers=auth(token),
        json={"conclusion": "success"},
        timeout=10,
    )
    assert foreign_id.status_code == 404
    assert patch_run(sim, token, run_id + 1000, status="in_progress").status_code == 404

    sim.suspend_installation(1)
    assert create_run(sim, token).status_code == 403
    sim.unsuspend_installation(1)
    sim.clock_offset = 3700  # past the token's hour
    expired = create_run(sim, token)
    assert (expired.status_code, expired.json()["message"]) == (401, "Bad credentials")
    assert len(sim.check_runs(repo.full_name)) == 1


# Suites and listing -----------------------------------------------------------------------


def test_runs_of_one_commit_share_one_suite_and_list_newest_first(
    sim: GitHubSimulator, repo: Repository, app_key
) -> None:
    token = mint(sim, app_key[0])
    first_sha = repo_sha(sim)
    lint_old = create_run(sim, token, name="lint").json()
    tests = create_run(sim, token, name="tests", conclusion="success").json()
    lint_new = create_run(sim, token, name="lint", status="in_progress").json()
    second_sha = sim.commit(repo.full_name, files={"b": "c"})
    later = create_run(sim, token, name="lint", head_sha=second_sha).json()

    suites = {r["check_suite"]["id"] for r in (lint_old, tests, lint_new)}
    assert len(suites) == 1
    assert later["check_suite"]["id"] not in suites
    assert lint_old["id"] < tests["id"] < lint_new["id"] < later["id"]
    assert not suites & {r["id"] for r in (lint_old, tests, lint_new, later)}

    def listed(ref: str, **params: str) -> list[int]:
        url = f"{sim.api_url}/repos/octo-org/hello/commits/{ref}/check-runs"
        answer = requests.get(url, headers=auth(token), params=params, timeout=10)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["total_count"] == len(body["check_runs"])
        return [r["id"] for r in body["check_runs"]]

    assert listed(first_sha) == [lint_new["id"], tests["id"]]  # the latest run of each name
    assert listed(first_sha, filter="all") == [lint_new["id"], tests["id"], lint_old["id"]]
    assert listed(first_sha, check_name="tests") == [tests["id"]]
    assert listed(first_sha, status="in_progress") == [lint_new["id"]]
    assert listed("main") == [later["id"]]  # a branch name resolves to its tip
    assert [r["id"] for r in sim.check_runs(repo.full_name, sha=first_sha)] == [
        lint_old["id"],
        tests["id"],
        lint_new["id"],
    ]
    unknown = requests.get(
        f"{sim.api_url}/repos/octo-org/hello/commits/no-such-branch/check-runs",
        headers=auth(token),
        timeout=10,
    )
    assert unknown.status_code == 422


def test_concurrent_creates_get_distinct_increasing_ids(
    sim: GitHubSimulator, repo: Repository, app_key
) -> None:
    token = mint(sim, app_key[0])
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda i: create_run(sim, token, name=f"c{i}"), range(16)))

    assert {a.status_code for a in answers} == {201}
    ids = [r["id"] for r in sim.check_runs(repo.full_name)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 16
    assert len({r["check_suite"]["id"] for r in sim.check_runs(repo.full_name)}) == 1


# Commit statuses ---------------------------------------------------------------------------


def post_status(sim: GitHubSimulator, token: str, sha: str, **body: Any) -> requests.Response:
    url = f"{sim.api_url}/repos/octo-org/hello/statuses/{sha}"
    return requests.post(url, headers=auth(token), json=body, timeout=10)


def combined(sim: GitHubSimulator, token: str, ref: str) -> dict[str, Any]:
    url = f"{sim.api_url}/repos/octo-org/hello/commits/{ref}/status"
    answer = requests.get(url, headers=auth(token), timeout=10)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_commit_statuses_and_the_combined_status(
    sim: GitHubSimulator, repo: Repository, app_key
) -> None:
    token = mint(sim, app_key[0])
    sha = repo_sha(sim)
    assert combined(sim, token, sha)["state"] == "pending"  # nothing reported yet

    created = post_status(
        sim, token, sha, state="pending", description="d" * 200, target_url="https://ci.example/1"
    )

    assert created.status_code == 201, created.text
    status = created.json()
    assert status["description"] == "d" * 140  # GitHub cuts descriptions at 140 characters
    assert status["context"] == "default"
    assert status["state"] == "pending"
    assert status["target_url"] == "https://ci.example/1"
    assert status["creator"]["type"] == "Bot"
    assert {"id", "node_id", "url", "created_at", "updated_at"} <= status.keys()
    assert post_status(sim, token, sha, state="success", context="lint").status_code == 201
    assert combined(sim, token, "main")["state"] == "pending"
    post_status(sim, token, sha, state="success")  # the default context now succeeds too
    success = combined(sim, token, sha)
    assert success["state"] == "success"
    assert success["sha"] == sha
    assert success["total_count"] == 2
    assert [s["context"] for s in success["statuses"]] == ["default", "lint"]
    assert success["repository"]["full_name"] == repo.full_name
    post_status(sim, token, sha, state="error", context="deploy")
    assert combined(sim, token, sha)["state"] == "failure"
    assert [s["state"] for s in sim.statuses(repo.full_name, sha)] == [
        "pending",
        "success",
        "success",
        "error",
    ]


def test_commit_statuses_github_refuses(sim: GitHubSimulator, repo: Repository, app_key) -> None:
    token = mint(sim, app_key[0])
    sha = repo_sha(sim)

    bad_state = post_status(sim, token, sha, state="cancelled")
    no_state = post_status(sim, token, sha, description="x")
    no_commit = post_status(sim, token, "a" * 40, state="success")
    no_permission = post_status(
        sim, mint(sim, app_key[0], permissions={"checks": "write"}), sha, state="success"
    )

    assert bad_state.status_code == 422
    assert bad_state.json()["message"] == "Validation Failed"
    assert bad_state.json()["errors"] == [
        {
            "resource": "Status",
            "code": "custom",
            "field": "state",
            "message": "state is not included in the list",
        }
    ]
    assert (no_state.status_code, no_state.json()["message"]) == (
        422,
        'Invalid request.\n\n"state" wasn\'t supplied.',
    )
    assert (no_commit.status_code, no_commit.json()["message"]) == (
        422,
        f"No commit found for SHA: {'a' * 40}",
    )
    assert (no_permission.status_code, no_permission.json()["message"]) == (403, NOT_ACCESSIBLE)
    assert sim.statuses(repo.full_name, sha) == []


# Webhook payloads --------------------------------------------------------------------------


def test_check_run_payload_has_what_ghapp_reads(
    sim: GitHubSimulator, repo: Repository, app_key
) -> None:
    token = mint(sim, app_key[0])
    feature_sha = sim.commit(repo.full_name, files={"f": "1"}, branch="feature/x")
    run = create_run(sim, token, head_sha=feature_sha, conclusion="failure").json()

    payload = sim.check_run_payload(repo.full_name, run["id"])

    assert payload["action"] == "rerequested"
    check_run = payload["check_run"]
    assert check_run["id"] == run["id"]
    assert check_run["app"]["id"] == int(APP_ID)
    assert check_run["head_sha"] == feature_sha
    suite = check_run["check_suite"]
    assert suite["id"] == run["check_suite"]["id"]
    assert suite["head_branch"] == "feature/x"  # the branch whose tip the commit was
    assert (suite["head_sha"], suite["after"]) == (feature_sha, feature_sha)
    assert suite["before"] == sim.branch_tip(repo.full_name)
    assert (suite["status"], suite["conclusion"]) == ("completed", "failure")
    assert suite["app"]["id"] == int(APP_ID)
    assert payload["repository"]["id"] == repo.id
    assert payload["repository"]["full_name"] == repo.full_name
    assert payload["repository"]["clone_url"] == repo.clone_url
    assert payload["installation"]["id"] == 1
    assert payload["organization"]["login"] == "octo-org"
    assert payload["sender"]["login"]
    json.dumps(payload)  # a webhook body: plain JSON

    other_app = sim.check_run_payload(repo.full_name, run["id"], action="created", app_id=99)
    assert other_app["check_run"]["app"]["id"] == 99
    assert other_app["check_run"]["check_suite"]["app"]["id"] == 99
    assert other_app["action"] == "created"
    with pytest.raises(ValueError, match="action must be one of"):
        sim.check_run_payload(repo.full_name, run["id"], action="rerun")
    with pytest.raises(KeyError):
        sim.check_run_payload(repo.full_name, run["id"] + 1)

    delivery = sim.send_webhook("check_run", payload)
    assert (delivery.event, delivery.action) == ("check_run", "rerequested")
    assert (delivery.installation_id, delivery.repository_id) == (1, repo.id)


def test_check_suite_payload_has_what_ghapp_reads(
    sim: GitHubSimulator, repo: Repository, app_key
) -> None:
    sha = repo_sha(sim)

    payload = sim.check_suite_payload(repo.full_name, sha, action="requested")

    suite = payload["check_suite"]
    assert payload["action"] == "requested"
    assert suite["head_sha"] == sha
    assert suite["head_branch"] == "main"
    assert suite["app"]["id"] == int(APP_ID)
    assert (suite["status"], suite["conclusion"]) == ("queued", None)
    assert suite["latest_check_runs_count"] == 0
    assert suite["head_commit"]["id"] == sha
    assert suite["pull_requests"] == []
    assert {"node_id", "url", "before", "after", "created_at", "updated_at", "check_runs_url"} <= (
        suite.keys()
    )
    assert payload["repository"]["full_name"] == repo.full_name
    assert payload["installation"]["id"] == 1

    # The suite the payload named is the one check runs for that commit join.
    token = mint(sim, app_key[0])
    run = create_run(sim, token, conclusion="success").json()
    assert run["check_suite"]["id"] == suite["id"]
    again = sim.check_suite_payload(repo.full_name, sha, branch="release", app_id=7)
    assert again["check_suite"]["id"] == suite["id"]
    assert again["check_suite"]["head_branch"] == "release"
    assert again["check_suite"]["app"]["id"] == 7
    assert again["check_suite"]["latest_check_runs_count"] == 1
    assert again["check_suite"]["conclusion"] == "success"
    assert again["action"] == "rerequested"
