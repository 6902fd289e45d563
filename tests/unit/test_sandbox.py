"""The processing command's bubblewrap sandbox: what it sees, what it keeps, what it leaves."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.support import command_lines, wait_for
from worker import sandbox as sandbox_module
from worker.processing import PushContext, run_command
from worker.sandbox import SHM_BYTES, TMP_BYTES, Sandbox, SandboxUnavailable, choose
from worker.workspace import JobDirectory

SHA = "d" * 40


def _sandbox(network: bool = True, hidden: tuple[str, ...] = ()) -> Sandbox:
    try:
        chosen = choose("bwrap", network=network, hidden=hidden)
    except SandboxUnavailable as exc:
        pytest.skip(f"bubblewrap cannot run on this machine: {exc}")
    assert chosen is not None
    return chosen


@pytest.fixture
def job(tmp_path: Path) -> tuple[Path, Path]:
    """(checkout, event file) inside a private job directory, next to a file of another job's."""
    root = tmp_path / "job"
    checkout = root / "checkout"
    checkout.mkdir(parents=True)
    (checkout / "README.md").write_text("hello\n")
    (tmp_path / "other-job-secret.txt").write_text("not yours\n")
    return checkout, root / "event.json"


def context_for(checkout: Path) -> PushContext:
    return PushContext(
        path=checkout,
        repository="o/r",
        ref="refs/heads/main",
        sha=SHA,
        delivery="d-1",
        payload={"after": SHA},
    )


def run_in(sandbox: Sandbox, job: tuple[Path, Path], command: str) -> str:
    checkout, event_path = job
    context = context_for(checkout)
    result = run_command(
        command, context, job_dir=JobDirectory(event_path.parent), timeout=30, sandbox=sandbox
    )
    return str(result["output"])


def test_none_means_no_sandbox() -> None:
    assert choose("none", network=True) is None


def test_no_bubblewrap_is_refused_in_one_line_saying_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sandbox_module, "find_bwrap", lambda: None)
    with pytest.raises(SandboxUnavailable) as info:
        choose("auto", network=True)
    message = str(info.value)
    assert "\n" not in message
    assert "bubblewrap" in message
    assert "SANDBOX=none" in message


def test_a_bubblewrap_that_cannot_make_a_sandbox_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sandbox_module, "find_bwrap", lambda: "/bin/false")
    with pytest.raises(SandboxUnavailable, match="cannot create a sandbox"):
        choose("bwrap", network=True)


def test_the_command_sees_its_checkout_and_event_and_nothing_of_the_host(job) -> None:
    output = run_in(
        _sandbox(),
        job,
        'pwd; cat README.md; cat "$GHAPP_EVENT_PATH"; echo; echo "HOME=$HOME";'
        ' echo made > made.txt; echo home > "$HOME/x" && echo home-writable;'
        " ls /; ls /proc | grep -c '^[0-9]'",
    )
    lines = output.splitlines()
    assert lines[0] == "/job/checkout"
    assert lines[1] == "hello"
    assert json.loads(lines[2]) == {"after": SHA}
    assert lines[3] == "HOME=/tmp/home"
    assert "home-writable" in lines
    assert (job[0] / "made.txt").read_text() == "made\n"  # the checkout is read-write
    top = set(lines[lines.index("home-writable") + 1 : -1])
    assert top <= {
        "bin",
        "dev",
        "etc",
        "job",
        "lib",
        "lib32",
        "lib64",
        "libx32",
        "proc",
        "sbin",
        "tmp",
        "usr",
    }
    assert int(lines[-1]) <= 5  # bwrap, the shells, ls, grep: its own PID namespace


def test_the_system_is_read_only_and_the_event_file_cannot_be_changed(job) -> None:
    output = run_in(
        _sandbox(),
        job,
        "for p in /usr/x /etc/x /job/event.json /job/x; do"
        ' (echo x > $p) 2>/dev/null && echo "wrote $p"; done; echo done',
    )
    assert output.strip() == "done"


def test_other_jobs_and_ghapps_files_are_out_of_sight(job, tmp_path: Path) -> None:
    hidden_file = Path("/etc/hostname")
    output = run_in(
        _sandbox(hidden=(str(hidden_file),)),
        job,
        f"cat {tmp_path}/other-job-secret.txt 2>&1; ls {tmp_path} 2>&1;"
        f" cat {hidden_file} 2>/dev/null || echo hidden-is-hidden",
    )
    assert "not yours" not in output
    assert "No such file" in output
    if hidden_file.exists():
        assert "hidden-is-hidden" in output


def test_what_the_command_started_dies_with_it_even_in_a_new_session(job) -> None:
    marker = f"ghapp-test-leftover-{os.getpid()}-{time.monotonic_ns()}"
    output = run_in(
        _sandbox(),
        job,
        f"setsid sh -c 'sleep 300; : {marker}' >/dev/null 2>&1 & "
        f"nohup sh -c 'sleep 300; : {marker}' >/dev/null 2>&1 & sleep 0.2; echo started",
    )

    assert output == "started\n"

    def leftovers() -> list[int]:
        return [pid for pid, line in command_lines().items() if marker.encode() in line]

    wait_for(lambda: not leftovers(), 5, "what the command started to be gone")


def test_without_network_only_loopback_exists(job) -> None:
    output = run_in(_sandbox(network=False), job, "cat /proc/net/dev")
    interfaces = {line.split(":")[0].strip() for line in output.splitlines() if ":" in line}
    assert interfaces == {"lo"}


def test_with_network_the_hosts_interfaces_are_there(job) -> None:
    output = run_in(_sandbox(network=True), job, "cat /proc/net/dev")
    interfaces = {line.split(":")[0].strip() for line in output.splitlines() if ":" in line}
    host = {
        line.split(":")[0].strip()
        for line in Path("/proc/net/dev").read_text().splitlines()
        if ":" in line
    }
    assert interfaces == host


def test_a_worker_where_bubblewrap_cannot_run_fails_command_jobs_saying_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ghapp.core.settings import Settings
    from worker.runtime import Runtime

    monkeypatch.setattr(sandbox_module, "find_bwrap", lambda: None)
    auto = Runtime(Settings(process_command="make check"))
    assert auto.sandbox is None
    assert auto.sandbox_error
    assert "SANDBOX=auto" in auto.sandbox_error
    unsandboxed = Runtime(Settings(process_command="make check", sandbox="none"))
    assert unsandboxed.sandbox is None
    assert unsandboxed.sandbox_error is None
    processor_only = Runtime(Settings(processor="m:f"))
    assert processor_only.sandbox_error is None  # nothing of the repository's runs


def test_what_the_command_may_fill_in_memory_is_bounded(job) -> None:
    """A tmpfs is memory no process owns (the OOM killer would pick another): /tmp and
    /dev/shm are capped, /dev takes no files."""
    output = run_in(
        _sandbox(),
        job,
        "head -c 1200000000 /dev/zero > /tmp/fill 2>/dev/null; echo tmp=$(stat -c %s /tmp/fill);"
        " head -c 100000000 /dev/zero > /dev/shm/fill 2>/dev/null;"
        " echo shm=$(stat -c %s /dev/shm/fill); (echo x > /dev/new) 2>/dev/null || echo dev-ro",
    )
    sizes = dict(line.split("=") for line in output.splitlines() if "=" in line)
    assert int(sizes["tmp"]) <= TMP_BYTES < 1200000000
    assert int(sizes["shm"]) <= SHM_BYTES < 100000000
    assert "dev-ro" in output


def test_a_working_directory_under_usr_is_hidden_a_system_directory_never(tmp_path) -> None:
    from worker.sandbox import hide

    assert hide("/usr/share") == [
        "--size",
        "4096",
        "--tmpfs",
        "/usr/share",
        "--remount-ro",
        "/usr/share",
    ]
    assert hide("/usr") == []  # the command needs it
    assert hide(str(tmp_path)) == []  # not in the sandbox anyway


def test_a_command_growing_its_checkout_past_the_limits_is_stopped(job) -> None:
    from worker.checkout import Limits
    from worker.processing import ProcessingError

    checkout, event_path = job
    context = context_for(checkout)
    limits = Limits(max_bytes=10**9, max_files=500, timeout=30)
    started = time.monotonic()
    with pytest.raises(ProcessingError, match="CHECKOUT_MAX_FILES") as stopped:
        run_command(
            "i=0; while true; do i=$((i+1)); : > f$i; done",
            context,
            job_dir=JobDirectory(event_path.parent),
            timeout=30,
            sandbox=_sandbox(),
            limits=limits,
        )
    assert time.monotonic() - started < 10
    assert "stopped: the checkout grew past 500 files" in str(stopped.value)


def test_the_command_writes_its_result_file_and_nothing_else_of_the_job(
    job: tuple[Path, Path],
) -> None:
    output = run_in(
        _sandbox(),
        job,
        'echo "$GHAPP_RESULT_PATH"; echo \'{"title": "from the sandbox"}\' > "$GHAPP_RESULT_PATH";'
        " touch /job/other 2>&1 || echo read-only",
    )
    assert output.splitlines()[0] == "/job/result.json"
    assert "read-only" in output
    result_file = JobDirectory(job[1].parent).result_file
    assert json.loads(result_file.read_text()) == {"title": "from the sandbox"}


def test_serves_data_directory_is_hidden_from_the_command_wherever_it_is(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ghapp.core.settings import load_settings
    from worker.runtime import Runtime

    _sandbox()  # skips where bubblewrap cannot run
    monkeypatch.setenv("GHAPP_DATA_DIR", "/etc/ghapp-data")
    settings = load_settings(
        {"GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY_PATH": "", "PROCESS_COMMAND": "true"}
    )
    sandbox = Runtime(settings).sandbox
    assert sandbox is not None
    assert "/etc/ghapp-data" in sandbox.hidden
