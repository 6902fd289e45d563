"""Tests for the simulator's Checks and commit statuses APIs, the App's configurable
permissions and the check_run / check_suite webhook payloads, over real HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from ghapp.simulator import GitHubSimulator, Repository, generate_app_key

APP_ID = "4242"
NOT_ACCESSIBLE = "Resource not accessible by integration"
NOT_GRANTED = "The permissions requested are not granted to this installation."


@pytest.fixture(scope="module")
def app_key() -> tuple[bytes, bytes]:
    return generate_app_key()


@pytest.fixture
def sim(app_key: tuple[bytes, bytes], tmp_path: Path) -> Iterator[GitHubSimulator]:
    with GitHubSimulator(APP_ID, app_key[1], tmp_path / "github") as simulator:
        simulator.add_installation(1)
        yield simulator


@pytest.fixture
def repo(sim: GitHubSimulator) -> Repository:
    return sim.create_repository("octo-org/hello", installation_id=1, files={"README.md": "hi\n"})


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
