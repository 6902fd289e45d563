"""What the sandbox costs a job: the same command run bare (SANDBOX=none) and in bubblewrap,
alternately, wall time and CPU (of the command and everything it started) per run."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from worker.processing import PushContext, run_command
from worker.sandbox import SandboxUnavailable, choose
from worker.workspace import JobDirectory

RUNS = 40
COMMANDS = {
    "`true`": "true",
    "`git log -1` + `ls -R`": "git log -1 --format=%h >/dev/null; ls -R >/dev/null",
}


def _children_cpu() -> float:
    """CPU seconds the whole machine spent busy: what a PID namespace's processes use does not
    all come back to this process's children's usage (the namespace's init reaps them)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def run_sandbox_cost(add: Callable[..., None]) -> None:
    add("## 7. What the sandbox costs a job")
    add()
    try:
        sandbox = choose("bwrap", network=True)
    except SandboxUnavailable as exc:
        add(f"Not measured: {exc}")
        add()
        return
    home = Path(tempfile.mkdtemp(prefix="ghapp-bench-sandbox-"))
    try:
        checkout = home / "checkout"
        checkout.mkdir()
        import subprocess

        subprocess.run(["git", "init", "-q", str(checkout)], check=True)
        for n in range(50):
            (checkout / f"file-{n}.txt").write_text("x\n")
        subprocess.run(
            ["git", "-C", str(checkout), "-c", "user.name=b", "-c", "user.email=b@b", "add", "."],
            check=True,
        )
        subprocess.run(
            [
                "git",
                "-C",
                str(checkout),
                "-c",
                "user.name=b",
                "-c",
                "user.email=b@b",
                "commit",
                "-qm",
                "c",
            ],
            check=True,
        )
        context = PushContext(
            path=checkout,
            repository="o/r",
            ref="refs/heads/main",
            sha="0" * 40,
            delivery="bench",
            payload={},
        )
        rows = []
        for label, command in COMMANDS.items():
            figures: dict[str, tuple[list[float], list[float]]] = {
                "bare": ([], []),
                "bubblewrap": ([], []),
            }
            for _ in range(RUNS):
                for mode, box in (("bare", None), ("bubblewrap", sandbox)):
                    cpu, started = _children_cpu(), time.perf_counter()
                    run_command(
                        command,
                        context,
                        job_dir=JobDirectory(home),
                        timeout=60,
                        sandbox=box,
                    )
                    figures[mode][0].append(time.perf_counter() - started)
                    figures[mode][1].append(_children_cpu() - cpu)
            bare_wall = statistics.median(figures["bare"][0]) * 1000
            box_wall = statistics.median(figures["bubblewrap"][0]) * 1000
            bare_cpu = statistics.mean(figures["bare"][1]) * 1000
            box_cpu = statistics.mean(figures["bubblewrap"][1]) * 1000
            rows.append(
                f"| {label} | {bare_wall:.1f} ms / {bare_cpu:.1f} ms | "
                f"{box_wall:.1f} ms / {box_cpu:.1f} ms | "
                f"+{box_wall - bare_wall:.1f} ms / +{box_cpu - bare_cpu:.1f} ms |"
            )
        add(
            f"Each command run {RUNS} times bare and {RUNS} times in bubblewrap "
            f"({sandbox.bwrap.rsplit('/', 3)[-3]}), alternately, in a 50-file checkout; "
            "median wall time / mean CPU the machine spent per run (everything busy, from "
            "/proc/stat: run it on an idle machine)."
        )
        add()
        add("| command | bare (SANDBOX=none) | bubblewrap | cost of the sandbox |")
        add("|---|---|---|---|")
        for row in rows:
            add(row)
        add()
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    run_sandbox_cost(print)
