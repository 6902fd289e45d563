"""The standalone simulator's control endpoint: JSON posts with its token only, never a
browser's, and refusals in one line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ghapp.simulator import GitHubSimulator
from ghapp.simulator.control import TOKEN_HEADER

TOKEN = "local-token"


@pytest.fixture
def local_github(tmp_path: Path) -> Iterator[GitHubSimulator]:
    simulator = GitHubSimulator(root=tmp_path)
    simulator.start()
    simulator.enable_control(TOKEN)
    simulator.create_repository("o/r", files={"a": "1"})
    yield simulator
    simulator.stop()


def post(simulator: GitHubSimulator, body: object, **headers: str) -> requests.Response:
    return requests.post(f"{simulator.url}/_simulator/push", json=body, headers=headers, timeout=10)


def test_a_push_with_the_token_commits(local_github: GitHubSimulator) -> None:
    before = local_github.branch_tip("o/r")
    answer = post(local_github, {"repository": "o/r", "files": {"b": "2"}}, **{TOKEN_HEADER: TOKEN})
    assert answer.status_code == 200, answer.text
    assert answer.json()["sha"] == local_github.branch_tip("o/r") != before
    assert answer.json()["deliveries"] == []  # no App installed


@pytest.mark.parametrize(
    "headers",
    [{}, {TOKEN_HEADER: "wrong"}, {TOKEN_HEADER: TOKEN, "Origin": "http://evil.example"}],
)
def test_without_the_token_or_from_a_web_page_nothing_happens(
    local_github: GitHubSimulator, headers: dict[str, str]
) -> None:
    before = local_github.branch_tip("o/r")
    answer = post(local_github, {"repository": "o/r", "files": {"b": "2"}}, **headers)
    assert answer.status_code == 403
    assert local_github.branch_tip("o/r") == before


def test_a_form_or_text_post_is_refused(local_github: GitHubSimulator) -> None:
    answer = requests.post(
        f"{local_github.url}/_simulator/push",
        data='{"repository": "o/r"}',
        headers={TOKEN_HEADER: TOKEN, "Content-Type": "text/plain"},
        timeout=10,
    )
    assert answer.status_code == 415


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"files": {}}, "'repository' is required"),
        ({"repository": "o/missing"}, "no repository"),
        ({"repository": "o/r", "files": {"a": 1}}, "text contents"),
        ([1], "not a JSON object"),
    ],
)
def test_bad_requests_are_422_with_a_reason(
    local_github: GitHubSimulator, body: object, message: str
) -> None:
    answer = post(local_github, body, **{TOKEN_HEADER: TOKEN})
    assert answer.status_code == 422
    assert message in answer.json()["message"]


def test_a_simulator_not_started_for_control_has_no_such_endpoint(tmp_path: Path) -> None:
    with GitHubSimulator(root=tmp_path) as plain:
        assert post(plain, {}, **{TOKEN_HEADER: TOKEN}).status_code == 404
