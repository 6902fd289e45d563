"""Workers killed, stopped or crowded: no job lost, none run twice at once, no leftovers on disk.

Every test has a stack of its own (``own_stack``): they kill and stop worker processes.
A test repository's ``ghapp-test.sh`` (run by the stack's PROCESS_COMMAND) leaves marks in the
stack's records directory (``$GHAPP_TEST_RECORDS``, in the command's environment).
"""

from __future__ import annotations

import base64
import os
import signal
import time
import uuid
from itertools import pairwise
from pathlib import Path

import pytest
from rq.job import Job, JobStatus

from ghapp.core.queueing import RETRY_INTERVALS
from tests.e2e.conftest import UNSANDBOXED, Stack
from tests.support import Process, failure_text, running, wait_for, wait_job

# A command that leaves "started <pid> <ms>" for each run of a delivery, sleeps ``{seconds}`` s
# on the delivery's first run only (in a child: "sleeping <child pid> <pid>"), then
# "ended <pid> <ms>".
FIRST_RUN_SLEEPS = """\
marks="$GHAPP_TEST_RECORDS/$GHAPP_DELIVERY.marks"
echo "started $$ $(date +%s%3N)" >> "$marks"
if [ ! -f "$marks.first" ]; then
  touch "$marks.first"
  sleep {seconds} &
  echo "sleeping $! $$" >> "$marks"
  wait
fi
echo "ended $$ $(date +%s%3N)" >> "$marks"
"""
# A command that notes its start, sleeps ``{seconds}`` s, and appends one line per run to runs.log.
TIMED_RUN = """\
start=$(date +%s%3N)
echo "$GHAPP_DELIVERY" >> "$GHAPP_TEST_RECORDS/$GHAPP_DELIVERY.started"
sleep {seconds}
echo "$GHAPP_DELIVERY start $start end $(date +%s%3N)" >> "$GHAPP_TEST_RECORDS/runs.log"
"""


def send(stack: Stack, repo: str, sha: str, before: str | None = None) -> tuple[str, str]:
    """Post a push of ``sha``; (delivery, job id), without waiting for the job."""
    delivery = str(uuid.uuid4())
    payload = stack.simulator.push_payload(repo, before=before, after=sha)
    answer = stack.post(payload, delivery=delivery)
    assert answer.status_code == 202, answer.text
    return delivery, answer.json()["job_id"]


def marks(stack: Stack, delivery: str) -> list[list[str]]:
    path = stack.records / f"{delivery}.marks"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def runs(stack: Stack) -> list[tuple[str, int, int]]:
    """(delivery, start ms, end ms) of each finished run of a TIMED_RUN command."""
    path = stack.records / "runs.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(d, int(start), int(end)) for d, _, start, _, end in (x.split() for x in lines)]


def assert_no_overlap(spans: list[tuple[str, int, int]]) -> None:
    ordered = sorted(spans, key=lambda span: span[1])
    for before, after in pairwise(ordered):
        assert before[2] <= after[1], f"runs overlapped in time: {before} and {after}"


def parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def worker_running(stack: Stack, pid: int) -> tuple[Process, int]:
    """The worker process (of ``stack``) that ``pid`` descends from, and its work horse."""
    ours = {worker.pid: worker for worker in stack.workers}
    child = pid
    while pid > 1:
        if pid in ours:
            return ours[pid], child
        pid, child = parent(pid), pid
    raise AssertionError("the command does not run under any worker of the stack")


def job_dirs(stack: Stack) -> list[Path]:
    return sorted(stack.tmp.glob("ghapp-job-*"))


def dead_pid() -> int:
    """A pid that no process has now."""
    for pid in range(999999, 900000, -1):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            continue
    raise AssertionError("no free pid found")


def kill_leftovers(pids: list[int]) -> None:
    """SIGKILL the processes our test commands started, if a broken guarantee left them."""
    for pid in pids:
        if running(pid):
            os.kill(pid, signal.SIGKILL)


def kill_worker_mid_job(
    stack: Stack, delivery: str, command_pids: list[int]
) -> tuple[Process, str]:
    """Once ``delivery``'s first run is sleeping, SIGKILL the worker running it and its work
    horse; (the killed worker, the first run's checkout). The pids of the first run's command
    are added to ``command_pids``."""
    first_run = wait_for(
        lambda: [m for m in marks(stack, delivery) if m[0] == "sleeping"],
        30,
        "the first run's command to start",
    )[0]
    command_pids += [int(first_run[1]), int(first_run[2])]
    victim, horse = worker_running(stack, command_pids[1])
    (checkout,) = [r["path"] for r in stack.record(delivery)]
    # The worker (with its scheduler), and its work horse: RQ gives it a process group of its own.
    os.killpg(victim.pid, signal.SIGKILL)
    os.killpg(horse, signal.SIGKILL)
    victim.popen.wait(10)
    return victim, checkout


@pytest.mark.timeout(240)
@pytest.mark.stack(overrides={**UNSANDBOXED, "JOB_TIMEOUT": "60"}, workers=2)
def test_a_killed_worker_s_job_runs_again_from_scratch_on_another_worker(
    own_stack: Stack, fresh_repo_name
):
    script = FIRST_RUN_SLEEPS.format(seconds=300)
    repo = own_stack.repository(fresh_repo_name, files={"ghapp-test.sh": script})
    delivery, job_id = send(
        own_stack, repo.full_name, own_stack.simulator.branch_tip(repo.full_name)
    )
    command_pids: list[int] = []
    try:
        victim, first_checkout = kill_worker_mid_job(own_stack, delivery, command_pids)
        killed_at = time.monotonic()
        (survivor,) = [w for w in own_stack.workers if w is not victim]

        job = wait_job(own_stack.redis, job_id, timeout=120)
        print(f"\njob finished {time.monotonic() - killed_at:.1f} s after its worker was killed")
        assert job.get_status() == JobStatus.FINISHED, failure_text(job)
        assert job.return_value()["status"] == "processed"
        assert survivor.alive()
        assert job.retries_left == len(RETRY_INTERVALS) - 1  # through the retry policy
        # Run again from scratch: the processor twice, in a new checkout the second time.
        checkouts = [r["path"] for r in own_stack.record(delivery)]
        assert len(checkouts) == 2
        assert checkouts[0] == first_checkout
        assert checkouts[1] != first_checkout
        assert [m[0] for m in marks(own_stack, delivery)] == [
            "started",
            "sleeping",
            "started",
            "ended",
        ]
        # One check run for the one push: the second run completed the first run's.
        (check_run,) = own_stack.simulator.check_runs(repo.full_name)
        assert check_run["external_id"] == delivery
        assert (check_run["status"], check_run["conclusion"]) == ("completed", "success")
        # The killed worker's job directory is removed (at the start of the job's second run).
        dead_dir = Path(first_checkout).parent
        wait_for(lambda: not dead_dir.exists(), 10, f"{dead_dir.name} to be removed")
    finally:
        kill_leftovers(command_pids)


@pytest.mark.stack(overrides={**UNSANDBOXED, "JOB_TIMEOUT": "60"}, workers=1)
def test_a_killed_job_s_command_does_not_outlive_it(own_stack: Stack, fresh_repo_name):
    script = FIRST_RUN_SLEEPS.format(seconds=300)
    repo = own_stack.repository(fresh_repo_name, files={"ghapp-test.sh": script})
    delivery, _ = send(own_stack, repo.full_name, own_stack.simulator.branch_tip(repo.full_name))
    command_pids: list[int] = []
    try:
        kill_worker_mid_job(own_stack, delivery, command_pids)
        wait_for(
            lambda: not any(running(pid) for pid in command_pids),
            10,
            f"the killed job's command (pids {command_pids}) to end",
        )
    finally:
        kill_leftovers(command_pids)


@pytest.mark.stack(
    overrides={**UNSANDBOXED, "SHUTDOWN_GRACE": "10", "JOB_TIMEOUT": "30"}, workers=1
)
def test_sigterm_lets_a_job_shorter_than_the_grace_finish_then_the_worker_exits(
    own_stack: Stack, fresh_repo_name
):
    repo = own_stack.repository(
        fresh_repo_name, files={"ghapp-test.sh": TIMED_RUN.format(seconds=3)}
    )
    delivery, job_id = send(
        own_stack, repo.full_name, own_stack.simulator.branch_tip(repo.full_name)
    )
    started = own_stack.records / f"{delivery}.started"
    wait_for(started.exists, 30, "the command to start")
    (worker,) = own_stack.workers
    os.kill(worker.pid, signal.SIGTERM)

    job = wait_job(own_stack.redis, job_id, timeout=20)
    assert job.get_status() == JobStatus.FINISHED, failure_text(job)
    assert job.return_value()["status"] == "processed"
    assert [run[0] for run in runs(own_stack)] == [delivery]  # ran to its end, once
    wait_for(lambda: not worker.alive(), 15, "the worker to exit after its job")
    assert worker.popen.returncode == 0, worker.output()


@pytest.mark.timeout(180)
@pytest.mark.stack(overrides={**UNSANDBOXED, "SHUTDOWN_GRACE": "2", "JOB_TIMEOUT": "60"}, workers=1)
def test_sigterm_interrupts_a_job_longer_than_the_grace_and_it_is_retried_later(
    own_stack: Stack, fresh_repo_name
):
    script = FIRST_RUN_SLEEPS.format(seconds=30)
    repo = own_stack.repository(fresh_repo_name, files={"ghapp-test.sh": script})
    delivery, job_id = send(
        own_stack, repo.full_name, own_stack.simulator.branch_tip(repo.full_name)
    )
    first_run = wait_for(
        lambda: [m for m in marks(own_stack, delivery) if m[0] == "sleeping"],
        30,
        "the first run's command to start",
    )[0]
    command_pids = [int(first_run[1]), int(first_run[2])]
    try:
        (worker,) = own_stack.workers
        os.kill(worker.pid, signal.SIGTERM)
        wait_for(lambda: not worker.alive(), 15, "the worker to exit")
        # The job was interrupted, its command stopped, and it waits for its retry.
        alive = [pid for pid in command_pids if running(pid)]
        assert not alive, f"the interrupted job's command is still running: pids {alive}"
        job = Job.fetch(job_id, connection=own_stack.redis)
        assert job.get_status() in (JobStatus.SCHEDULED, JobStatus.QUEUED), job.get_status()
        assert job.retries_left == len(RETRY_INTERVALS) - 1
        assert [m[0] for m in marks(own_stack, delivery)] == ["started", "sleeping"]

        # A later worker runs it again (after the first run's command was gone: checked above).
        own_stack.start_worker("worker-late")
        job = wait_job(own_stack.redis, job_id, timeout=60)
        assert job.get_status() == JobStatus.FINISHED, failure_text(job)
        assert job.return_value()["status"] == "processed"
        assert len(own_stack.record(delivery)) == 2
        assert [m[0] for m in marks(own_stack, delivery)] == [
            "started",
            "sleeping",
            "started",
            "ended",
        ]
    finally:
        kill_leftovers(command_pids)


@pytest.mark.stack(overrides={**UNSANDBOXED, "JOB_TIMEOUT": "30"}, workers=2)
def test_a_burst_on_one_branch_processes_the_first_and_the_newest_push_only(
    own_stack: Stack, fresh_repo_name
):
    repo = own_stack.repository(
        fresh_repo_name, files={"ghapp-test.sh": TIMED_RUN.format(seconds=2)}
    )
    shas = [
        own_stack.simulator.commit(repo.full_name, files={"n": str(n)}, message=f"c{n}")
        for n in range(1, 6)
    ]
    first, first_job = send(own_stack, repo.full_name, shas[0])
    wait_for((own_stack.records / f"{first}.started").exists, 30, "the first push's command")
    later = [send(own_stack, repo.full_name, sha, before=prev) for prev, sha in pairwise(shas)]
    newest = later[-1][0]

    jobs = [wait_job(own_stack.redis, job_id, 60) for job_id in [first_job, *(j for _, j in later)]]
    assert [j.get_status() for j in jobs] == [JobStatus.FINISHED] * 5, [
        failure_text(j) for j in jobs
    ]
    results = [j.return_value() for j in jobs]
    assert results[0]["status"] == "processed"
    assert results[0]["sha"] == shas[0]
    assert results[4]["status"] == "processed"
    assert results[4]["sha"] == shas[4]
    # Superseded by a newer push of the burst: the newest one, or (checked before the newest
    # was accepted) one that was itself superseded since.
    deliveries = [first, *(d for d, _ in later)]
    for n in (1, 2, 3):
        assert results[n]["status"] == "superseded", results[n]
        assert results[n]["sha"] == shas[n], results[n]
        assert results[n]["by_delivery"] in deliveries[n + 1 :], results[n]
    assert sorted(run[0] for run in runs(own_stack)) == sorted([first, newest])
    assert_no_overlap(runs(own_stack))
    # Each push has its check run: the skipped ones name the commit processed instead.
    checks = {c["head_sha"]: c for c in own_stack.simulator.check_runs(repo.full_name)}
    assert set(checks) == set(shas)
    assert checks[shas[0]]["conclusion"] == checks[shas[4]]["conclusion"] == "success"
    for n in (1, 2, 3):
        assert checks[shas[n]]["conclusion"] == "skipped"
        newer = results[n]["by_delivery"]
        assert shas[deliveries.index(newer)] in checks[shas[n]]["output"]["summary"]


@pytest.mark.stack(
    overrides={**UNSANDBOXED, "SUPERSEDE_PUSHES": "false", "JOB_TIMEOUT": "30"}, workers=2
)
def test_with_supersede_off_every_push_of_a_burst_is_processed_one_at_a_time(
    own_stack: Stack, fresh_repo_name
):
    repo = own_stack.repository(
        fresh_repo_name, files={"ghapp-test.sh": TIMED_RUN.format(seconds=1)}
    )
    shas = [
        own_stack.simulator.commit(repo.full_name, files={"n": str(n)}, message=f"c{n}")
        for n in range(4)
    ]
    sent = [send(own_stack, repo.full_name, sha) for sha in shas]

    jobs = [wait_job(own_stack.redis, job_id, 90) for _, job_id in sent]
    assert [j.get_status() for j in jobs] == [JobStatus.FINISHED] * 4, [
        failure_text(j) for j in jobs
    ]
    assert [j.return_value()["status"] for j in jobs] == ["processed"] * 4
    assert [j.return_value()["sha"] for j in jobs] == shas
    assert sorted(run[0] for run in runs(own_stack)) == sorted(d for d, _ in sent)
    assert_no_overlap(runs(own_stack))


@pytest.mark.parametrize(
    "content",
    [
        # Incompressible (the pack is as large as the file): git is at times slow enough for the
        # limit to be seen, at times not.
        "random",
        # Compressible: a small pack, fetched at once, then a 3 MiB file written at once.
        "repetitive",
    ],
)
@pytest.mark.stack(overrides={**UNSANDBOXED, "CHECKOUT_MAX_MB": "1"}, workers=1)
def test_a_checkout_past_checkout_max_mb_fails_at_once_and_leaves_nothing(
    own_stack: Stack, fresh_repo_name, content
):
    size = 3 * 1024 * 1024
    if content == "random":
        big = base64.b64encode(os.urandom(size * 3 // 4)).decode()
    else:
        big = "0123456789abcdef" * (size // 16)
    repo = own_stack.repository(fresh_repo_name, files={"big.bin": big})
    _, job_id = send(own_stack, repo.full_name, own_stack.simulator.branch_tip(repo.full_name))

    job = wait_job(own_stack.redis, job_id, timeout=30)
    assert job.get_status() == JobStatus.FAILED, f"a 3 MiB checkout passed: {job.return_value()}"
    assert job.retries_left == 0
    assert "CHECKOUT_MAX_MB" in failure_text(job)
    assert job_dirs(own_stack) == []
    # Not the step's failure: the check run is cancelled, saying why.
    (check_run,) = own_stack.simulator.check_runs(repo.full_name)
    assert check_run["conclusion"] == "cancelled"
    assert "CHECKOUT_MAX_MB" in check_run["output"]["title"]


@pytest.mark.stack(workers=1)
def test_job_directories_of_dead_processes_are_removed_and_live_ones_kept(
    own_stack: Stack, fresh_repo_name
):
    abandoned = own_stack.tmp / f"ghapp-job-{dead_pid()}-abc"
    (abandoned / "checkout").mkdir(parents=True)
    (abandoned / "checkout" / "file").write_text("left by a killed worker\n")
    live = own_stack.tmp / f"ghapp-job-{os.getpid()}-live"
    live.mkdir()
    (live / "file").write_text("in use\n")

    repo = own_stack.repository(fresh_repo_name)
    _, job_id = send(own_stack, repo.full_name, own_stack.simulator.branch_tip(repo.full_name))
    job = wait_job(own_stack.redis, job_id, timeout=30)
    assert job.get_status() == JobStatus.FINISHED, failure_text(job)
    assert not abandoned.exists()
    assert job_dirs(own_stack) == [live]  # the job's own directory is gone too
    assert (live / "file").read_text() == "in use\n"


@pytest.mark.timeout(120)
@pytest.mark.stack(overrides={**UNSANDBOXED, "JOB_TIMEOUT": "60"}, workers=0)
def test_a_job_killed_on_its_last_attempt_completes_its_check_run_as_cancelled(
    own_stack: Stack, fresh_repo_name
):
    script = FIRST_RUN_SLEEPS.format(seconds=300)
    repo = own_stack.repository(fresh_repo_name, files={"ghapp-test.sh": script})
    delivery, job_id = send(
        own_stack, repo.full_name, own_stack.simulator.branch_tip(repo.full_name)
    )
    # Its retries spent (as after three killed attempts): this attempt is the last.
    own_stack.redis.hset(f"rq:job:{job_id}", "retries_left", 0)
    own_stack.start_worker("last-attempt")
    command_pids: list[int] = []
    try:
        first_run = wait_for(
            lambda: [m for m in marks(own_stack, delivery) if m[0] == "sleeping"],
            30,
            "the command to start",
        )[0]
        command_pids += [int(first_run[1]), int(first_run[2])]
        running_check = wait_for(
            lambda: own_stack.simulator.check_runs(repo.full_name), 10, "the check run"
        )
        assert running_check[0]["status"] == "in_progress"
        _, horse = worker_running(own_stack, command_pids[1])
        os.killpg(horse, signal.SIGKILL)
        job = wait_job(own_stack.redis, job_id, timeout=30)
        assert job.get_status() == JobStatus.FAILED
        check_run = wait_for(
            lambda: [
                c
                for c in own_stack.simulator.check_runs(repo.full_name)
                if c["status"] == "completed"
            ],
            10,
            "the check run to be completed",
        )[0]
        assert check_run["conclusion"] == "cancelled"
        assert "killed" in check_run["output"]["title"]
    finally:
        kill_leftovers(command_pids)
