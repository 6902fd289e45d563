"""Section 4, checkout of one commit of a long-history repository: ghapp's fetch against git's
shallow and full clones, from the simulator's git http-backend on loopback."""

from __future__ import annotations

import base64
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.figures import Figure
from bench.stage import APP_ID, INSTALLATION, Stage
from worker.checkout import Limits, directory_usage, fetch_commit
from worker.github_api import GitHubAPI
from worker.tokens import app_jwt

COMMITS = 3000
PAGES = 200
OURS, SHALLOW, FULL = "ghapp's checkout", "git clone --depth 1", "git clone (full)"


@dataclass
class Method:
    time: Figure  # seconds
    size: int  # bytes of .git/objects afterwards


@dataclass
class Checkouts:
    commits: int
    methods: dict[str, Method] = field(default_factory=dict)  # OURS, SHALLOW, FULL


def long_history(stage: Stage) -> tuple[str, str]:
    """COMMITS commits, about 2 MB of tree and some 20 MB of packed history."""
    name = "bench/long-history"
    rng = random.Random(7)
    words = [f"w{n:04d}" for n in range(4096)]

    def text(size: int) -> str:
        return " ".join(rng.choice(words) for _ in range(size // 6)) + "\n"

    stage.simulator.create_repository(
        name,
        installation_id=INSTALLATION,
        files={f"docs/page_{i}.txt": text(10_000) for i in range(PAGES)},
    )
    sha = ""
    for n in range(COMMITS):
        sha = stage.simulator.commit(
            name,
            files={f"docs/page_{n % PAGES}.txt": text(10_000)},
            message=f"Revise page {n % PAGES}",
        )
    return name, sha


def measure(stage: Stage, rounds: int) -> Checkouts:
    """Each method at least 3 times, into a fresh directory each time."""
    name, sha = long_history(stage)
    repo = stage.simulator.repository(name)
    token = read_token(stage, repo.id)
    # git's own clones, the references, get the token as a header (a benchmark's shortcut).
    credential = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    env = {
        **os.environ,
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {credential}",
    }

    def ours(path: Path) -> None:
        fetch_commit(
            path,
            repo.clone_url,
            sha,
            token=token,
            github_url=stage.simulator.url,
            limits=Limits(max_bytes=10**10, max_files=10**7, timeout=300),
        )

    def shallow(path: Path) -> None:
        argv = ["git", "clone", "--quiet", "--depth", "1", "--single-branch", "--branch", "main"]
        subprocess.run([*argv, repo.clone_url, str(path)], env=env, check=True)

    def full(path: Path) -> None:
        subprocess.run(["git", "clone", "--quiet", repo.clone_url, str(path)], env=env, check=True)

    methods: dict[str, Callable[[Path], None]] = {OURS: ours, SHALLOW: shallow, FULL: full}
    result = Checkouts(COMMITS)
    for label, run in methods.items():
        figure, size = Figure(), 0
        for _ in range(max(3, rounds)):
            path = Path(tempfile.mkdtemp(dir=stage.home))
            target = path / "repo"
            started = time.perf_counter()
            run(target)
            figure.values.append(time.perf_counter() - started)
            size = directory_usage(target / ".git" / "objects")[0]
            shutil.rmtree(path)
        result.methods[label] = Method(figure, size)
    return result


def read_token(stage: Stage, repository_id: int) -> str:
    """An installation token to read one repository, minted as the worker does."""
    api = GitHubAPI(stage.simulator.api_url)
    answer = api.create_installation_token(
        app_jwt(app_id=APP_ID, private_key=stage.private_key, now=time.time()),
        INSTALLATION,
        repository_ids=(repository_id,),
        permissions={"contents": "read"},
    )
    return str(answer["token"])
