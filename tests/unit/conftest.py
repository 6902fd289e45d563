"""What the simulator's unit tests share: a fresh simulator holding the test App and one
installation of it, and a repository there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ghapp.simulator import GitHubSimulator, Repository
from tests.conftest import APP_ID


@pytest.fixture
def sim(app_key: tuple[bytes, bytes], tmp_path: Path) -> Iterator[GitHubSimulator]:
    with GitHubSimulator(APP_ID, app_key[1], tmp_path / "github") as simulator:
        simulator.add_installation(1)
        yield simulator


@pytest.fixture
def repo(sim: GitHubSimulator) -> Repository:
    return sim.create_repository("octo-org/hello", installation_id=1, files={"README.md": "hi\n"})
