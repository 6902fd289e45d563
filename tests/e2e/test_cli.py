"""The ``ghapp`` command as a user runs it: serve, demo, send, refusing to start misconfigured."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from ghapp.local import free_port
from ghapp.simulator import GitHubSimulator
from tests.conftest import APP_ID, INSTALLATION_ID
from tests.support import (
    ROOT,
    Process,
    child_env,
    command_lines,
    ghapp,
    process_children,
    running,
    signed_post,
    wait_for,
)


def run(command: list[str], env: dict[str, str], cwd: Path, timeout: float = 60):
    return subprocess.run(
        ghapp(command), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    ("command", "settings", "named"),
    [
        (["web"], {"REDIS_URL": "redis://127.0.0.1:1"}, "GITHUB_WEBHOOK_SECRET"),
        (["web"], {"GITHUB_WEBHOOK_SECRET": "s"}, "REDIS_URL"),
        (["worker"], {"GITHUB_APP_ID": "1"}, "REDIS_URL"),
        (["worker"], {"REDIS_URL": "redis://127.0.0.1:1"}, "GITHUB_APP_ID"),
        (
            ["worker"],
            {"REDIS_URL": "redis://127.0.0.1:1", "GITHUB_APP_ID": "1"},
            "GITHUB_PRIVATE_KEY",
        ),
        (
            ["serve"],
            {"GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": "-----BEGIN nonsense"},
            "private key",
        ),
        (
            ["worker"],
            {"GITHUB_PRIVATE_KEY_PATH": "/nonexistent/key.pem"},
            "GITHUB_PRIVATE_KEY_PATH",
        ),
    ],
)
def test_a_process_missing_a_setting_exits_at_once_with_one_line_naming_it(
    command, settings, named, tmp_path: Path
):
    settings = {"GITHUB_WEBHOOK_SECRET": "s", **settings}
    if command == ["web"] and named == "GITHUB_WEBHOOK_SECRET":
        settings.pop("GITHUB_WEBHOOK_SECRET")
    done = run(command, child_env(settings), tmp_path, timeout=30)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert named in lines[0]
    assert "nonsense" not in done.stderr  # key material is never echoed


def test_a_worker_whose_processor_cannot_load_exits_at_once_with_one_line(
    tmp_path: Path, app_key: tuple[bytes, bytes]
):
    settings = {
        "REDIS_URL": "redis://127.0.0.1:1",  # never reached: the PROCESSOR is checked first
        "GITHUB_APP_ID": "1",
        "GITHUB_PRIVATE_KEY": app_key[0].decode(),
        "PROCESSOR": "tests.e2e.processors:missing",
    }
    done = run(["worker"], child_env(settings), tmp_path, timeout=30)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "PROCESSOR='tests.e2e.processors:missing' cannot be loaded" in line


def test_procfile_web_line_refuses_to_start_without_the_secret(tmp_path: Path):
    procfile = (Path(__file__).parents[2] / "Procfile").read_text()
    web = next(line for line in procfile.splitlines() if line.startswith("web:"))
    done = subprocess.run(
        web.removeprefix("web:").strip(),
        shell=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        env=child_env({"REDIS_URL": "redis://127.0.0.1:1", "PORT": str(free_port())}),
    )
    assert done.returncode != 0
    assert "GITHUB_WEBHOOK_SECRET" in done.stderr
    assert "Traceback" not in done.stderr


def descendants(pid: int) -> set[int]:
    children = process_children()
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def worker_pids(serve_pid: int) -> list[int]:
    """The worker processes that ``ghapp serve`` started (its direct children running one)."""
    found = []
    for pid in process_children().get(serve_pid, []):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.endswith(b"ghapp\x00worker\x00") and running(pid):
            found.append(pid)
    return found


def serve_env(
    tmp_path: Path, simulator: GitHubSimulator, app_key: tuple[bytes, bytes], port: int
) -> dict[str, str]:
    """Settings for ``ghapp serve`` in ``tmp_path``: the App's in a .env there (its key in a
    file), the rest in the environment."""
    key_file = tmp_path / "app.pem"
    key_file.write_bytes(app_key[0])
    key_file.chmod(0o600)
    (tmp_path / ".env").write_text(
        f"GITHUB_APP_ID={APP_ID}\nGITHUB_PRIVATE_KEY_PATH={key_file}\n"
        "GITHUB_WEBHOOK_SECRET=from-dotenv\n"
    )
    return child_env(
        {
            "GITHUB_API_URL": simulator.api_url,
            "GITHUB_URL": simulator.url,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "WORKERS": "2",
        }
    )


def test_serve_runs_everything_on_one_machine_and_stops_cleanly(
    simulator: GitHubSimulator, app_key: tuple[bytes, bytes], tmp_path: Path
):
    port = free_port()
    env = serve_env(tmp_path, simulator, app_key, port)
    serve = Process("serve", ghapp(["serve"]), env, tmp_path, tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ok(url + "/healthz"), 30, "ghapp serve to answer")
        repo = simulator.create_repository(
            f"octo-org/serve-{uuid.uuid4().hex[:6]}",
            installation_id=INSTALLATION_ID,
            files={"README.md": "served\n"},
        )
        payload = simulator.push_payload(
            repo.full_name, before=None, after=simulator.branch_tip(repo.full_name)
        )
        answer = signed_post(url + "/webhook", payload, secret=b"from-dotenv")
        assert answer.status_code == 202, answer.text
        wait_for(
            lambda: any(m.repository_ids == (repo.id,) for m in simulator.issued_tokens),
            30,
            "the job to mint its token",
        )
        wait_for(lambda: "processed" in serve.output(), 30, "the job to be processed")
        assert (tmp_path / ".ghapp" / "redis").is_dir()
        # A worker that dies is started again.
        workers = worker_pids(serve.pid)
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        wait_for(lambda: len(set(worker_pids(serve.pid)) - {workers[0]}) == 2, 30, "a new worker")
        family = descendants(serve.pid)
        assert len(family) >= 4  # redis, gunicorn, two workers (and their own children)
        # A second serve on the same data directory would share Redis's files: refused.
        second = run(["serve"], env, tmp_path, timeout=30)
        assert second.returncode == 2
        (line,) = second.stderr.strip().splitlines()
        assert f"in use by another embedded Redis (pid {serve.pid}" in line
    finally:
        serve.popen.send_signal(signal.SIGTERM)
        code = serve.popen.wait(60)
        serve.stop()
    assert code == 0, serve.output()[-3000:]
    assert not [pid for pid in family if running(pid)], "ghapp serve left processes behind"


def test_serve_stops_with_one_line_when_its_embedded_redis_dies(
    simulator: GitHubSimulator, app_key: tuple[bytes, bytes], tmp_path: Path
):
    port = free_port()
    serve = Process(
        "serve", ghapp(["serve"]), serve_env(tmp_path, simulator, app_key, port), tmp_path, tmp_path
    )
    try:
        wait_for(lambda: _ok(f"http://127.0.0.1:{port}/healthz"), 30, "ghapp serve to answer")
        family = descendants(serve.pid)
        (redis_pid,) = [
            pid
            for pid in process_children().get(serve.pid, [])
            if b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        os.kill(redis_pid, signal.SIGKILL)
        code = serve.popen.wait(60)
        output = serve.output()
    finally:
        serve.stop()
    assert code == 1
    assert "the embedded Redis exited" in output
    assert not [pid for pid in family if running(pid)], "ghapp serve left processes behind"


def test_an_unusable_data_directory_is_refused_in_one_line(
    simulator: GitHubSimulator, app_key: tuple[bytes, bytes], tmp_path: Path
):
    (tmp_path / "a-file").write_text("")
    env = serve_env(tmp_path, simulator, app_key, free_port())
    done = run(["serve", "--data-dir", str(tmp_path / "a-file" / "data")], env, tmp_path)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "ghapp serve --data-dir DIR" in line


def test_demo_processes_a_push_end_to_end(tmp_path: Path):
    done = run(["demo"], child_env({}), tmp_path, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "webhook answered 202" in done.stdout
    assert "answered 200" in done.stdout
    assert "duplicate" in done.stdout
    assert "installation tokens minted: 2" in done.stdout  # the fetch's, the check run's
    assert "done: the push was processed end to end" in done.stdout
    # The check run as GitHub holds it, with its summary's first lines.
    assert re.search(
        r"check run on [0-9a-f]{12}: ghapp · completed · success · .* passed in", done.stdout
    )
    assert "| fetch |" in done.stdout
    assert "CHANGELOG.md" in done.stdout  # the command ran in the checkout of the pushed commit


def test_send_signs_a_payload_file_with_the_callers_env_and_prints_the_answer(tmp_path: Path):
    port = free_port()
    received: list[dict] = []

    from werkzeug.serving import make_server
    from werkzeug.wrappers import Request, Response

    from webapp.deliveries import verify_signature

    @Request.application
    def endpoint(request: Request) -> Response:
        body = request.get_data()
        verify_signature(body, request.headers.get("X-Hub-Signature-256"), [b"sekrit"])
        received.append({"event": request.headers["X-GitHub-Event"], "body": json.loads(body)})
        return Response('{"status": "ok"}', status=200, content_type="application/json")

    server = make_server("127.0.0.1", port, endpoint, threaded=True)
    import threading

    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        (tmp_path / "ping.json").write_text('{"zen": "Design for failure."}')
        # Through ./run, called from the user's directory: its .env holds the secret.
        (tmp_path / ".env").write_text("GITHUB_WEBHOOK_SECRET=sekrit\n")
        done = subprocess.run(
            [
                str(ROOT / "run"),
                "send",
                "ping.json",
                "--event",
                "ping",
                "--url",
                f"http://127.0.0.1:{port}/hook",
            ],
            env=child_env({}),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("200 ")
    assert received == [{"event": "ping", "body": {"zen": "Design for failure."}}]


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def test_a_worker_without_git_exits_at_once_with_one_line(
    tmp_path: Path, app_key: tuple[bytes, bytes]
):
    settings = {
        "REDIS_URL": "redis://127.0.0.1:1",
        "GITHUB_APP_ID": "1",
        "GITHUB_PRIVATE_KEY": app_key[0].decode(),
        "PATH": str(tmp_path),  # no git there
    }
    done = run(["worker"], child_env(settings), tmp_path, timeout=30)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("ghapp worker: git is not on PATH: install git")


def test_deliveries_and_retry_without_redis_say_what_to_do_in_one_line(tmp_path: Path):
    for command in (["deliveries"], ["retry", "--failed"]):
        done = run(command, child_env({}), tmp_path, timeout=30)
        assert done.returncode == 2
        (line,) = done.stderr.strip().splitlines()
        assert "start `ghapp serve` here, or set REDIS_URL" in line


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["retry", "--failed", "--since", "5x"], "--since '5x' is not a duration"),
        (["retry"], "give delivery ids, or --failed"),
        (["retry", "abc", "--since", "1h"], "--since goes with --failed"),
        (["deliveries", "--outcome", "lost"], "--outcome 'lost' is not one of queued"),
    ],
)
def test_operator_commands_refuse_bad_arguments_in_one_line(arguments, says, tmp_path: Path):
    done = run(arguments, child_env({}), tmp_path, timeout=30)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert says in line


def test_serve_says_where_everything_is_and_deliveries_and_retry_use_its_redis(
    simulator: GitHubSimulator, app_key: tuple[bytes, bytes], tmp_path: Path
):
    port = free_port()
    env = serve_env(tmp_path, simulator, app_key, port)
    env["DASHBOARD_PASSWORD"] = "dashboard-sekrit"
    serve = Process("serve", ghapp(["serve"]), env, tmp_path, tmp_path)
    url = f"http://127.0.0.1:{port}"
    operator = child_env({})  # no REDIS_URL: the commands find serve's embedded Redis
    try:
        wait_for(lambda: "Redis:" in serve.output(), 30, "ghapp serve to say where it is")
        said = serve.output()
        assert f"webhook:    http://127.0.0.1:{port}/webhook" in said
        assert f"http://127.0.0.1:{port}/dashboard (Basic auth" in said
        assert f"http://127.0.0.1:{port}/metrics (open: set METRICS_TOKEN)" in said
        url_file = tmp_path / ".ghapp" / "redis" / "url"
        assert 'RQ_REDIS_URL="$(cat .ghapp/redis/url)" rq info' in said
        assert "dashboard-sekrit" not in said
        assert url_file.read_text().strip() not in said  # the URL holds Redis's password
        assert oct(url_file.stat().st_mode & 0o777) == "0o600"
        # The command serve printed works as printed.
        rq_info = subprocess.run(
            said.split("Redis:", 1)[1].split("   (", 1)[0].strip(),
            shell=True,
            cwd=tmp_path,
            env=operator,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert rq_info.returncode == 0, rq_info.stderr
        assert "ghapp" in rq_info.stdout

        repo = simulator.create_repository(
            f"octo-org/deliveries-{uuid.uuid4().hex[:6]}",
            installation_id=INSTALLATION_ID,
            files={"README.md": "listed\n"},
        )
        payload = simulator.push_payload(
            repo.full_name, before=None, after=simulator.branch_tip(repo.full_name)
        )
        delivery = str(uuid.uuid4())
        answer = signed_post(url + "/webhook", payload, secret=b"from-dotenv", delivery=delivery)
        assert answer.status_code == 202, answer.text

        def processed() -> dict | None:
            done = run(["deliveries", "--json", "--outcome", "processed"], operator, tmp_path)
            assert done.returncode == 0, done.stderr
            entries = [json.loads(line) for line in done.stdout.splitlines()]
            return next((e for e in entries if e["delivery"] == delivery), None)

        entry = wait_for(processed, 60, "the delivery to be listed as processed")
        assert entry["repository"] == repo.full_name
        table = run(["deliveries", "--repository", repo.full_name], operator, tmp_path)
        assert table.returncode == 0, table.stderr
        heading, row = table.stdout.splitlines()
        assert heading.split() == [
            "TIME", "DELIVERY", "EVENT", "REPOSITORY", "REF", "SHA", "STATE", "REASON"
        ]  # fmt: skip
        assert delivery in row
        assert entry["sha"][:7] in row
        assert " main " in row
        assert "processed" in row

        again = run(["retry", delivery, "no-such-delivery"], operator, tmp_path)
        assert again.returncode == 1
        (printed,) = again.stdout.splitlines()
        assert re.fullmatch(rf"{delivery} -> {delivery}-again-[0-9a-f]{{8}}, job \S+", printed)
        (error,) = again.stderr.splitlines()
        assert error.startswith("ghapp retry: delivery no-such-delivery is not in the history")
        new_delivery = printed.split(" -> ")[1].split(",")[0]
        wait_for(
            lambda: (
                new_delivery
                in run(["deliveries", "--outcome", "processed"], operator, tmp_path).stdout
            ),
            60,
            "the retried push to be processed",
        )
        none_failed = run(["retry", "--failed", "--since", "1h"], operator, tmp_path)
        assert none_failed.returncode == 0, none_failed.stderr
        assert none_failed.stdout.strip() == "no failed deliveries in the last 1h"
    finally:
        serve.popen.send_signal(signal.SIGTERM)
        serve.popen.wait(60)
        serve.stop()
    assert not url_file.exists()  # removed with the server


def test_a_second_ctrl_c_stops_serve_at_once(
    simulator: GitHubSimulator, app_key: tuple[bytes, bytes], tmp_path: Path
):
    port = free_port()
    env = serve_env(tmp_path, simulator, app_key, port)
    env.update({"PROCESS_COMMAND": "sleep 120", "SHUTDOWN_GRACE": "100", "JOB_TIMEOUT": "200"})
    serve = Process("serve", ghapp(["serve"]), env, tmp_path, tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: "Redis:" in serve.output(), 30, "ghapp serve to start")
        repo = simulator.create_repository(
            f"octo-org/ctrl-c-{uuid.uuid4().hex[:6]}",
            installation_id=INSTALLATION_ID,
            files={"README.md": "slow\n"},
        )
        payload = simulator.push_payload(
            repo.full_name, before=None, after=simulator.branch_tip(repo.full_name)
        )
        assert signed_post(url + "/webhook", payload, secret=b"from-dotenv").status_code == 202
        wait_for(
            lambda: any(b"sleep\x00120" in line for line in command_lines().values()),
            60,
            "the job's command to run",
        )
        family = descendants(serve.pid)
        serve.popen.send_signal(signal.SIGINT)
        wait_for(lambda: "Ctrl-C again: now" in serve.output(), 10, "serve to start stopping")
        time.sleep(1)
        assert serve.alive()  # the job has SHUTDOWN_GRACE seconds to end
        started = time.monotonic()
        serve.popen.send_signal(signal.SIGINT)
        serve.popen.wait(20)
        assert time.monotonic() - started < 15
        assert "stopping at once" in serve.output()
    finally:
        serve.stop()
    # What the killed workers ran dies with them (told by the kernel), within moments.
    wait_for(
        lambda: not [pid for pid in family if running(pid)],
        5,
        f"the processes of serve to end: {[command_lines().get(p) for p in family if running(p)]}",
    )
