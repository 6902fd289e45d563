"""Section 7, what the sandbox costs a job: the same command run bare (SANDBOX=none) and in
bubblewrap, alternately, wall time and CPU (of the command and everything it started) per run.

Usage: PYTHONPATH=. python bench/sandbox_cost.py (also ``./run bench --only sandbox``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from worker.processing import PushContext, run_command
from worker.sandbox import Sandbox, SandboxUnavailable, choose
from worker.workspace import JobDirectory

RUNS = 40
FILES = 50
COMMANDS = {
    "`true`": "true",
    "`git log -1` + `ls -R`": "git log -1 --format=%h >/dev/null; ls -R >/dev/null",
}
MODES = ("bare", "bubblewrap")


@dataclass
class Runs:
    wall: list[float] = field(default_factory=list)  # seconds, by run
    cpu: list[float] = field(default_factory=list)  # CPU seconds of the whole machine, by run


@dataclass
class SandboxCost:
    runs: int
    files: int
    unavailable: str | None = None  # why bubblewrap could not be measured
    bwrap: str = ""  # which bubblewrap
    commands: dict[str, dict[str, Runs]] = field(default_factory=dict)  # label → mode → runs


def busy_cpu() -> float:
    """CPU seconds the whole machine spent busy: what a PID namespace's processes use does not
    all come back to this process's children's usage (the namespace's init reaps them)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def make_checkout(path: Path, files: int) -> None:
    """A git repository of one commit of ``files`` small files."""
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    for n in range(files):
        (path / f"file-{n}.txt").write_text("x\n")
    git = ["git", "-C", str(path), "-c", "user.name=b", "-c", "user.email=b@b"]
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)


def measure() -> SandboxCost:
    result = SandboxCost(RUNS, FILES)
    try:
        sandbox = choose("bwrap", network=True)
    except SandboxUnavailable as exc:
        result.unavailable = str(exc)
        return result
    result.bwrap = sandbox.bwrap.rsplit("/", 3)[-3]
    home = Path(tempfile.mkdtemp(prefix="ghapp-bench-sandbox-"))
    try:
        checkout = home / "checkout"
        make_checkout(checkout, FILES)
        context = PushContext(
            path=checkout,
            repository="o/r",
            ref="refs/heads/main",
            sha="0" * 40,
            delivery="bench",
            payload={},
        )
        boxes: dict[str, Sandbox | None] = {"bare": None, "bubblewrap": sandbox}
        for label, command in COMMANDS.items():
            runs = result.commands[label] = {mode: Runs() for mode in MODES}
            for _ in range(RUNS):
                for mode, box in boxes.items():
                    cpu, started = busy_cpu(), time.perf_counter()
                    run_command(
                        command, context, job_dir=JobDirectory(home), timeout=60, sandbox=box
                    )
                    runs[mode].wall.append(time.perf_counter() - started)
                    runs[mode].cpu.append(busy_cpu() - cpu)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return result


if __name__ == "__main__":
    from bench import report

    print("\n".join(report.sandbox(measure())))
