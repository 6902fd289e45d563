"""The installation token of a real run is nowhere it must not be; the App's key neither."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import threading
import uuid
from pathlib import Path

import pytest
import redis
from rq.job import Job

from ghapp.core import redis_keys
from tests.e2e.conftest import UNSANDBOXED, Stack
from tests.support import failure_text, wait_for, wait_job
from worker.tokens import cache_cipher

# Copies the whole checkout (with .git) aside for inspection, dumps the environment, then fails:
# the failure text lands in Redis too.
LEAKY_SCRIPT = """
cp -a . "$GHAPP_TEST_RECORDS/copy-$GHAPP_DELIVERY"
env > "$GHAPP_TEST_RECORDS/env-$GHAPP_DELIVERY"
echo "failing on purpose"
exit 1
"""


class ProcessWatcher:
    """Samples every process's command line while a job runs."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    with contextlib.suppress(OSError):
                        self.seen.add(Path(f"/proc/{entry}/cmdline").read_bytes())

    def __enter__(self) -> ProcessWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def all_redis_bytes(client: redis.Redis) -> list[tuple[bytes, bytes]]:
    """(key, value) for every value of every key, whatever its type."""
    found = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"string":
            values = [client.get(key) or b""]
        elif kind == b"hash":
            values = [k + b"=" + v for k, v in client.hgetall(key).items()]
        elif kind == b"list":
            values = client.lrange(key, 0, -1)
        elif kind == b"set":
            values = list(client.smembers(key))
        elif kind == b"zset":
            values = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == b"stream":
            values = [repr(entry).encode() for entry in client.xrange(key)]
        else:
            values = []
        found.extend((key, value) for value in values)
    return found


@pytest.mark.stack(overrides=UNSANDBOXED, workers=1)
def test_the_token_of_a_real_run_is_nowhere_it_must_not_be(own_stack: Stack, fresh_repo_name: str):
    """Unsandboxed, so that the command can copy what it sees (its checkout, its environment)
    to where the test reads it."""
    stack = own_stack
    repo = stack.repository(fresh_repo_name, files={"ghapp-test.sh": LEAKY_SCRIPT})
    sha = stack.simulator.branch_tip(repo.full_name)
    payload = stack.simulator.push_payload(repo.full_name, before=None, after=sha)
    delivery = str(uuid.uuid4())
    with ProcessWatcher() as watcher:
        answer = stack.post(payload, delivery=delivery)
        assert answer.status_code == 202
        job = wait_job(stack.redis, answer.json()["job_id"])
    assert job.get_status() == "failed"
    assert "failing on purpose" in failure_text(job)

    # Every token of the job: the fetch's, and the check run's.
    mints = [m for m in stack.simulator.issued_tokens if m.repository_ids == (repo.id,)]
    assert len(mints) == 2
    (fetch_token,) = [m.token.encode() for m in mints if "contents" in m.permissions]
    header = base64.b64encode(b"x-access-token:" + fetch_token)
    forms = tuple(
        form
        for token in (m.token.encode() for m in mints)
        for form in (token, base64.b64encode(b"x-access-token:" + token))
    )

    # Logs of the web and worker processes.
    logs = stack.logs().encode()
    assert logs
    assert not any(form in logs for form in forms)
    # Anything in Redis: job data and arguments, results, failure text, the token cache.
    for key, value in all_redis_bytes(stack.redis):
        assert not any(form in value or form in key for form in forms), key
    assert not any(form in repr(Job.fetch(job.id, stack.redis).kwargs).encode() for form in forms)
    # Command lines: every git invocation, and every process seen while the job ran.
    git_lines = stack.git_log.read_bytes()
    assert b"fetch" in git_lines
    assert not any(form in git_lines for form in forms)
    assert watcher.seen
    assert not any(form in line for line in watcher.seen for form in forms)
    # The checkout, .git included, and the processing command's environment.
    copy = stack.records / f"copy-{delivery}"
    files = [p for p in copy.rglob("*") if p.is_file()]
    assert (copy / ".git" / "config").is_file()
    assert len(files) > 5
    for path in files:
        data = path.read_bytes()
        assert not any(form in data for form in forms), path
    assert b"extraheader" not in (copy / ".git" / "config").read_bytes().lower()
    environment = (stack.records / f"env-{delivery}").read_bytes()
    assert b"GHAPP_SHA=" + sha.encode() in environment
    assert not any(form in environment for form in forms)
    for name in (b"GITHUB_PRIVATE_KEY", b"GITHUB_WEBHOOK_SECRET", b"GIT_CONFIG", b"REDIS_URL"):
        assert name not in environment
    names = {line.split(b"=", 1)[0] for line in environment.splitlines() if b"=" in line}
    assert {n for n in names if not n.startswith(b"GHAPP_")} <= {
        b"PATH",
        b"HOME",
        b"LANG",
        b"LC_ALL",
        b"PWD",
        b"SHLVL",
        b"_",
    }
    # The token did work: the simulator saw it as git's Basic credential, and only there.
    git_requests = [r for r in stack.simulator.requests if r.path.startswith(f"/{repo.full_name}")]
    assert any(header in str(r.headers).encode() for r in git_requests)
    assert not any(
        form in (r.path + "?" + r.query).encode()
        for r in stack.simulator.requests
        for form in forms
    )


def test_cached_tokens_are_encrypted_and_a_damaged_entry_is_a_cache_miss(
    stack: Stack, app_key: tuple[bytes, bytes], fresh_repo_name: str
):
    repo = stack.repository(fresh_repo_name)

    def push() -> None:
        before = stack.simulator.branch_tip(repo.full_name)
        sha = stack.simulator.commit(repo.full_name, files={"n.txt": uuid.uuid4().hex})
        payload = stack.simulator.push_payload(repo.full_name, before=before, after=sha)
        answer = stack.post(payload)
        assert answer.status_code == 202
        assert wait_job(stack.redis, answer.json()["job_id"]).get_status() == "finished"

    def mints() -> list:
        return [
            m
            for m in stack.simulator.issued_tokens
            if m.repository_ids == (repo.id,) and "contents" in m.permissions
        ]

    push()
    (mint,) = mints()
    cached = stack.redis.hgetall(redis_keys.tokens(7))
    sealed = [
        v for v in cached.values() if mint.token.encode() in cache_cipher(app_key[0]).decrypt(v)
    ]
    assert len(sealed) == 1
    assert mint.token.encode() not in sealed[0]
    field = next(f for f, v in cached.items() if v == sealed[0])

    push()  # served from the cache
    assert len(mints()) == 1
    stack.redis.hset(redis_keys.tokens(7), field, b"gAAAAAdamaged")
    push()  # the damaged entry is ignored, a token minted again
    assert len(mints()) == 2


def test_private_key_never_logged_and_a_readable_key_file_warns(
    stack: Stack, app_key: tuple[bytes, bytes], tmp_path: Path
):
    body_lines = [line for line in app_key[0].decode().splitlines() if "-----" not in line]
    logs = stack.logs()
    assert not any(line in logs for line in body_lines)

    key_file = tmp_path / "app.pem"
    key_file.write_bytes(app_key[0])
    key_file.chmod(0o644)
    worker = stack.start_worker(
        "worker-key-file",
        {"GITHUB_PRIVATE_KEY": "", "GITHUB_PRIVATE_KEY_PATH": str(key_file)},
    )
    try:
        wait_for(lambda: "readable by other users" in worker.output(), 20, "the key warning")
        assert f"chmod 600 {key_file}" in worker.output()
        assert not any(line in worker.output() for line in body_lines)
    finally:
        worker.stop()
        stack.workers.remove(worker)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_private_key_file_readable_only_by_its_owner_does_not_warn(mode: int, tmp_path: Path):
    from ghapp.core.settings import private_key_file_warning

    key_file = tmp_path / "app.pem"
    key_file.write_text("k")
    key_file.chmod(mode)
    assert private_key_file_warning(str(key_file)) is None


def test_a_clone_url_off_github_gets_no_token_and_fails_the_job_at_once(
    stack: Stack, fresh_repo_name: str
):
    repo = stack.repository(fresh_repo_name)
    payload = stack.simulator.push_payload(
        repo.full_name, before=None, after=stack.simulator.branch_tip(repo.full_name)
    )
    with socket.socket() as elsewhere:  # a server on another port than GITHUB_URL's
        elsewhere.bind(("127.0.0.1", 0))
        elsewhere.listen()
        elsewhere.settimeout(0.5)
        port = elsewhere.getsockname()[1]
        payload["repository"]["clone_url"] = f"http://127.0.0.1:{port}/{repo.full_name}.git"
        answer = stack.post(payload)
        assert answer.status_code == 202
        job = wait_job(stack.redis, answer.json()["job_id"])
        assert job.get_status() == "failed"
        assert job.retries_left == 0
        assert "is not on GITHUB_URL" in failure_text(job)
        with pytest.raises(TimeoutError):
            elsewhere.accept()  # nobody ever connected there


@pytest.mark.stack(
    overrides={"GIT_TRACE_CURL": "1", "GIT_TRACE_REDACT": "0", "GIT_CURL_VERBOSE": "1"},
    workers=1,
)
def test_git_tracing_in_the_worker_environment_does_not_reach_the_fetch(
    own_stack: Stack, fresh_repo_name: str
):
    repo = own_stack.repository(fresh_repo_name)
    payload = own_stack.simulator.push_payload(
        repo.full_name, before=None, after=own_stack.simulator.branch_tip(repo.full_name)
    )
    answer = own_stack.post(payload)
    assert answer.status_code == 202
    assert wait_job(own_stack.redis, answer.json()["job_id"]).get_status() == "finished"
    mints = [m for m in own_stack.simulator.issued_tokens if m.repository_ids == (repo.id,)]
    assert len(mints) == 2  # the fetch's and the check run's
    logs = own_stack.logs().encode()
    for mint in mints:
        assert mint.token.encode() not in logs
        assert base64.b64encode(b"x-access-token:" + mint.token.encode()) not in logs
    assert b"Authorization" not in logs
