"""The processing step: its environment, exit status, bounded output, timeout and summary."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from worker.failures import Permanent, Transient
from worker.processing import (
    OUTPUT_LIMIT,
    ProcessingError,
    ProcessingInterrupted,
    PushContext,
    command_environment,
    load_processor,
    process,
    run_command,
    summarize,
)
from worker.sandbox import Sandbox
from worker.workspace import JobDirectory

SHA = "c" * 40
PAYLOAD = {"ref": "refs/heads/main", "after": SHA, "repository": {"full_name": "o/r"}}


def make_context(path: Path) -> PushContext:
    return PushContext(
        path=path,
        repository="o/r",
        ref="refs/heads/main",
        sha=SHA,
        delivery="d-1",
        payload=PAYLOAD,
    )


def processor_returning_sha(context: PushContext) -> dict[str, Any]:
    """A PROCESSOR used by the tests below."""
    return {"seen": context.sha, "files": sorted(p.name for p in context.path.iterdir())}


def processor_returning_object(context: PushContext) -> object:
    return {1, 2}


def processor_raising(context: PushContext) -> None:
    raise ValueError("bad input in " + context.repository)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    path = tmp_path / "checkout"
    path.mkdir()
    return path


@pytest.fixture
def event_path(tmp_path: Path) -> Path:
    return tmp_path / "event.json"


def run(
    command: str,
    checkout: Path,
    event_path: Path,
    timeout: float = 10,
    sandbox: Sandbox | None = None,
) -> dict[str, Any]:
    return run_command(
        command,
        make_context(checkout),
        job_dir=JobDirectory(event_path.parent),
        timeout=timeout,
        sandbox=sandbox,
    )


def _alive(pid: int) -> bool:
    """Running (not gone and not a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_command_environment_is_an_allow_list(tmp_path: Path) -> None:
    base = {
        "PATH": "bin-dir",
        "LANG": "C.UTF-8",
        "HOME": "/home/worker",
        "GITHUB_APP_ID": "4242",
        "GITHUB_PRIVATE_KEY": "pem",
        "GITHUB_PRIVATE_KEY_PATH": "app.pem",
        "GITHUB_WEBHOOK_SECRET": "hook",
        "TOKEN_CACHE_KEY": "cache",
        "REDIS_URL": "redis://:password@redis",
        "HEROKU_REDIS_MAROON_URL": "redis://:password@redis",
        "GIT_CONFIG_COUNT": "1",
        "DATABASE_URL": "postgres://user:password@db",
        "AWS_SECRET_ACCESS_KEY": "aws",
        "NPM_TOKEN": "npm",
    }
    env = command_environment(
        base,
        make_context(tmp_path),
        event_path="/job/event.json",
        home="/job-home",
        result_path="/job/result.json",
    )
    assert env == {
        "PATH": "bin-dir",
        "LANG": "C.UTF-8",
        "HOME": "/job-home",
        "GHAPP_REPOSITORY": "o/r",
        "GHAPP_REF": "refs/heads/main",
        "GHAPP_SHA": SHA,
        "GHAPP_DELIVERY": "d-1",
        "GHAPP_EVENT": "push",
        "GHAPP_EVENT_PATH": "/job/event.json",
        "GHAPP_RESULT_PATH": "/job/result.json",
    }


def test_process_env_names_what_else_passes_but_never_a_secret(tmp_path: Path) -> None:
    base = {"PATH": "p", "NPM_TOKEN": "npm", "REDIS_URL": "redis://:pw@r", "OTHER": "x"}
    env = command_environment(
        base,
        make_context(tmp_path),
        event_path="e",
        home="h",
        result_path="r",
        passed=("NPM_TOKEN", "REDIS_URL", "MISSING"),
    )
    assert env["NPM_TOKEN"] == "npm"
    assert "REDIS_URL" not in env
    assert "OTHER" not in env
    assert "MISSING" not in env


def test_successful_command_returns_its_output_and_runs_in_the_checkout(
    checkout: Path, event_path: Path
) -> None:
    result = run("echo hello; pwd", checkout, event_path)
    assert result["exit_status"] == 0
    lines = result["output"].splitlines()
    assert lines[0] == "hello"
    assert Path(lines[1]).resolve() == checkout.resolve()


def test_command_does_not_see_the_apps_secrets(
    checkout: Path, event_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", "hook-secret-value")
    monkeypatch.setenv("GITHUB_PRIVATE_KEY", "private-key-value")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "Authorization: Basic header-value")
    result = run("env", checkout, event_path)
    for secret in ("hook-secret-value", "private-key-value", "header-value"):
        assert secret not in result["output"]
    assert f"GHAPP_SHA={SHA}" in result["output"]
    assert f"HOME={event_path.parent / 'home'}" in result["output"]  # the job's own


def test_command_reads_the_payload_from_event_path(checkout: Path, event_path: Path) -> None:
    result = run('cat "$GHAPP_EVENT_PATH"; echo; echo "$GHAPP_EVENT_PATH"', checkout, event_path)
    payload_line, path_line = result["output"].splitlines()
    assert json.loads(payload_line) == PAYLOAD
    assert Path(path_line) == event_path


def test_failing_command_raises_with_status_and_output_tail(
    checkout: Path, event_path: Path
) -> None:
    with pytest.raises(ProcessingError) as info:
        run("echo lint failed here >&2; exit 3", checkout, event_path)
    assert isinstance(info.value, Permanent)  # the same commit would fail again
    message = str(info.value)
    assert "status 3" in message
    assert "lint failed here" in message


def test_large_output_is_truncated_to_its_tail(checkout: Path, event_path: Path) -> None:
    command = f"head -c {OUTPUT_LIMIT * 3} /dev/zero | tr '\\0' x; echo; echo THE-END"
    result = run(command, checkout, event_path)
    output = result["output"]
    assert output.rstrip().endswith("THE-END")
    assert "truncated" in output
    assert len(output.encode()) < OUTPUT_LIMIT + 100


def test_output_is_read_in_chunks_so_memory_stays_flat(checkout: Path, event_path: Path) -> None:
    """A command printing hundreds of megabytes costs the worker no more than the tail."""
    import resource

    run("head -c 10000000 /dev/zero", checkout, event_path)  # warm up whatever is lazily made
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = run("head -c 400000000 /dev/zero | tr '\\0' y; echo THE-END", checkout, event_path)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert result["output"].rstrip().endswith("THE-END")
    assert grown_kib < 50_000


def test_small_output_is_not_marked_truncated(checkout: Path, event_path: Path) -> None:
    result = run("echo short", checkout, event_path)
    assert result["output"] == "short\n"


def test_command_past_timeout_is_stopped_with_its_children(
    checkout: Path, event_path: Path
) -> None:
    command = "echo started; sleep 60 & echo $! > pidfile; wait"
    started = time.monotonic()
    with pytest.raises(ProcessingError) as info:
        run(command, checkout, event_path, timeout=1)
    assert time.monotonic() - started < 10
    assert "JOB_TIMEOUT" in str(info.value)
    assert "started" in str(info.value)
    pid = int((checkout / "pidfile").read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(pid)


def test_command_killed_from_outside_is_interrupted_to_be_retried(
    checkout: Path, event_path: Path
) -> None:
    with pytest.raises(ProcessingInterrupted) as info:
        run("echo partial; kill -KILL $$", checkout, event_path)
    assert isinstance(info.value, Transient)


def test_summarize_counts_files_and_bytes_outside_git(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"12345")
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "deeper" / "b.bin").write_bytes(b"x" * 100)
    (tmp_path / ".git" / "objects").mkdir(parents=True)
    (tmp_path / ".git" / "objects" / "pack").write_bytes(b"y" * 1000)
    (tmp_path / ".gitignore").write_bytes(b"zz")
    assert summarize(tmp_path, SHA) == {"sha": SHA, "files": 3, "bytes": 107}


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "json",
        "json:",
        ":dumps",
        "no_such_module_for_ghapp_tests:run",
        "json:no_such_function",
        "json:JSONDecoder.no_such_method",
        "json:__doc__",
    ],
)
def test_bad_processor_spec_is_a_processing_error(spec: str) -> None:
    with pytest.raises(ProcessingError, match="PROCESSOR"):
        load_processor(spec)


def test_processor_spec_loads_nested_attributes() -> None:
    assert load_processor("json:dumps") is json.dumps
    assert load_processor("json:JSONDecoder.decode") is json.JSONDecoder.decode


def test_process_without_processor_or_command_returns_a_summary(
    checkout: Path, event_path: Path
) -> None:
    (checkout / "README").write_bytes(b"hello")
    result, _ = process(
        make_context(checkout),
        processor=None,
        command=None,
        job_dir=JobDirectory(event_path.parent),
        timeout=10,
    )
    assert result == {"summary": {"sha": SHA, "files": 1, "bytes": 5}}


def test_process_runs_processor_and_command(checkout: Path, event_path: Path) -> None:
    (checkout / "README").write_bytes(b"hello")
    result, _ = process(
        make_context(checkout),
        processor=f"{__name__}:processor_returning_sha",
        command="cat README",
        job_dir=JobDirectory(event_path.parent),
        timeout=10,
    )
    assert result["processor"] == {"seen": SHA, "files": ["README"]}
    assert result["command"] == {"exit_status": 0, "output": "hello"}
    assert result["summary"]["files"] == 1


def test_process_keeps_a_non_json_processor_result_as_its_repr(
    checkout: Path, event_path: Path
) -> None:
    result, _ = process(
        make_context(checkout),
        processor=f"{__name__}:processor_returning_object",
        command=None,
        job_dir=JobDirectory(event_path.parent),
        timeout=10,
    )
    assert result["processor"] == repr({1, 2})
    json.dumps(result)


def test_process_fails_when_the_command_fails(checkout: Path, event_path: Path) -> None:
    with pytest.raises(ProcessingError, match="status 1"):
        process(
            make_context(checkout),
            processor=None,
            command="false",
            job_dir=JobDirectory(event_path.parent),
            timeout=10,
        )


def test_processor_exception_becomes_a_processing_error_naming_it(
    checkout: Path, event_path: Path
) -> None:
    with pytest.raises(ProcessingError) as info:
        process(
            make_context(checkout),
            processor=f"{__name__}:processor_raising",
            command=None,
            job_dir=JobDirectory(event_path.parent),
            timeout=10,
        )
    assert "ValueError" in str(info.value)
    assert "bad input in o/r" in str(info.value)


def test_a_command_that_exited_is_done_though_its_background_child_holds_the_output(
    checkout: Path, event_path: Path
) -> None:
    started = time.monotonic()
    result = run("(sleep 30 &); echo done", checkout, event_path, timeout=20)
    assert result["output"] == "done\n"
    assert time.monotonic() - started < 5


def test_a_command_writing_past_the_result_files_limit_is_stopped(
    checkout: Path, event_path: Path
) -> None:
    started = time.monotonic()
    with pytest.raises(ProcessingError) as info:
        run('head -c 6000000 /dev/zero > "$GHAPP_RESULT_PATH"; sleep 30', checkout, event_path)
    assert time.monotonic() - started < 10
    assert "GHAPP_RESULT_PATH" in str(info.value)


def test_the_result_file_is_read_after_the_command(checkout: Path, event_path: Path) -> None:
    result = run(
        'echo \'{"conclusion": "neutral", "title": "2 notes"}\' > "$GHAPP_RESULT_PATH"',
        checkout,
        event_path,
    )
    assert (result["report"].conclusion, result["report"].title) == ("neutral", "2 notes")
    with pytest.raises(ProcessingError) as info:
        run('echo \'{"title": "1 error"}\' > "$GHAPP_RESULT_PATH"; exit 1', checkout, event_path)
    assert info.value.report.title == "1 error"
    assert info.value.exit_status == 1


def processor_printing(context: PushContext) -> dict[str, Any]:
    import os
    import subprocess
    import sys

    print("from print")
    sys.stderr.write("from stderr\n")
    os.write(1, b"from the descriptor\n")
    subprocess.run(["echo", "from a child"], check=True)
    return {"title": "printed"}


def processor_printing_then_raising(context: PushContext) -> None:
    print("about to fail")
    raise RuntimeError("it broke")


def processor_printing_a_lot(context: PushContext) -> None:
    for n in range(20_000):
        print(f"line {n:06d}")


def test_a_processors_stdout_and_stderr_are_captured_into_the_result(
    checkout: Path, event_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    result, report = process(
        make_context(checkout),
        processor=f"{__name__}:processor_printing",
        command=None,
        job_dir=JobDirectory(event_path.parent),
        timeout=10,
    )
    output = result["processor_output"]
    for line in ("from print", "from stderr", "from the descriptor", "from a child"):
        assert line in output
    assert result["processor"] == {"title": "printed"}
    assert report.title == "printed"
    # Nothing reached this process's own output, and its descriptors work again afterwards.
    seen = capfd.readouterr()
    assert "from print" not in seen.out + seen.err
    print("after")
    assert capfd.readouterr().out == "after\n"


def test_a_failing_processors_output_tail_goes_with_its_error(
    checkout: Path, event_path: Path
) -> None:
    with pytest.raises(ProcessingError) as info:
        process(
            make_context(checkout),
            processor=f"{__name__}:processor_printing_then_raising",
            command=None,
            job_dir=JobDirectory(event_path.parent),
            timeout=10,
        )
    assert info.value.output == "about to fail\n"
    assert info.value.reason.endswith("raised RuntimeError: it broke")


def test_a_processors_captured_output_keeps_only_its_tail(checkout: Path, event_path: Path) -> None:
    result, _ = process(
        make_context(checkout),
        processor=f"{__name__}:processor_printing_a_lot",
        command=None,
        job_dir=JobDirectory(event_path.parent),
        timeout=10,
    )
    output = result["processor_output"]
    assert output.startswith("[… output truncated …]\n")
    assert output.endswith("line 019999\n")
    assert len(output.encode()) <= OUTPUT_LIMIT + 100
