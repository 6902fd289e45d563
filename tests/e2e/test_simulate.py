"""The development loop with no account and no network: ``ghapp simulate`` writes ``.env``,
``ghapp serve`` reads it, ``ghapp simulate push`` and ``rerun`` deliver as GitHub would."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

from ghapp.local import free_port
from tests.support import Process, child_env, ghapp, wait_for


def run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ghapp(command), env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def processed(env: dict[str, str], cwd: Path, event: str) -> list[dict]:
    listed = run(["deliveries", "--json", "--event", event], env, cwd)
    entries = [json.loads(line) for line in listed.stdout.splitlines()]
    return [e for e in entries if e.get("job_state") == "processed"]


def test_simulate_serve_push_and_rerun(tmp_path: Path, own_redis_url: str):
    github_port, ghapp_port = free_port(), free_port()
    env = child_env({"PORT": str(ghapp_port), "HOST": "127.0.0.1", "REDIS_URL": own_redis_url})
    github = Process(
        "simulate", ghapp(["simulate", "--port", str(github_port)]), env, tmp_path, tmp_path
    )
    serve = None
    try:
        env_file = tmp_path / ".env"
        wait_for(lambda: "Next:" in github.output(), 30, "ghapp simulate to start")
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        assert f'GITHUB_URL="http://127.0.0.1:{github_port}"' in env_file.read_text()
        serve = Process("serve", ghapp(["serve"]), env, tmp_path, tmp_path)
        wait_for(lambda: "dashboard:" in serve.output(), 40, "ghapp serve to start")

        pushed = run(
            ["simulate", "push", "demo-org/hello-world", "--file", "notes.txt=hello"], env, tmp_path
        )
        assert pushed.returncode == 0, pushed.stderr
        assert ": 202 (" in pushed.stdout
        wait_for(lambda: processed(env, tmp_path, "push"), 30, "the push to be processed")

        rerun = run(["simulate", "rerun", "demo-org/hello-world"], env, tmp_path)
        assert rerun.returncode == 0, rerun.stderr
        wait_for(lambda: processed(env, tmp_path, "check_suite"), 30, "the re-run")

        # A .env of a local GitHub's App is the simulator's own: a new one replaces it, and
        # the old file is kept.
        github.stop()
        again = Process(
            "simulate-again",
            ghapp(["simulate", "--port", str(free_port())]),
            env,
            tmp_path,
            tmp_path,
        )
        try:
            wait_for(lambda: "Next:" in again.output(), 30, "ghapp simulate to start again")
        finally:
            again.stop()
        assert (tmp_path / ".env.bak").exists()
    finally:
        if serve is not None:
            serve.stop()
        github.stop()


def test_simulate_push_without_a_local_github_says_what_to_do(tmp_path: Path):
    env = child_env({"GITHUB_URL": f"http://127.0.0.1:{free_port()}"})
    done = run(["simulate", "push", "o/r"], env, tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "GITHUB_SIMULATOR_TOKEN is not set" in line
    env["GITHUB_SIMULATOR_TOKEN"] = "t"
    done = run(["simulate", "push", "o/r"], env, tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "start `ghapp simulate` first" in line
    missing = run(["simulate", "push"], env, tmp_path)
    assert missing.returncode == 2
    assert "needs the repository" in missing.stderr


def test_simulate_never_replaces_a_real_apps_env_without_force(tmp_path: Path):
    (tmp_path / ".env").write_text("GITHUB_APP_ID=12\nGITHUB_URL=https://github.com\n")
    env = child_env({})
    done = run(["simulate", "--port", str(free_port())], env, tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "--force" in line
    assert (tmp_path / ".env").read_text() == "GITHUB_APP_ID=12\nGITHUB_URL=https://github.com\n"


def test_simulate_refuses_a_repository_that_is_not_owner_slash_name(tmp_path: Path):
    done = run(["simulate", "--repository", "noslash"], child_env({}), tmp_path)
    assert done.returncode == 2
    assert "is not OWNER/NAME" in done.stderr
    assert "Traceback" not in done.stderr
