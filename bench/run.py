"""ghapp's benchmark, side by side with its references in one run; writes bench/RESULTS.md.

1. acknowledge: wrk against the production web process (the Procfile line), Probot 14 (installed
   with npm into ~/.cache/ghapp-bench at bench time, bench/probot.py; left out, saying why, when
   node or npm is missing), a naive Flask + RQ endpoint and the floor (HMAC + LPUSH), two
   payloads, concurrency 16 and 64 (bench/acknowledge.py), and where a web worker's time goes
   (bench/web_profile.py);
2. backlog: acknowledge with 50,000 jobs waiting (bench/backlog.py);
3. processed: 500 pushes over 20 repositories, 1, 2 and 4 worker processes (bench/processed.py);
4. checkout: one commit of a long-history repository vs git's shallow and full clones
   (bench/checkout.py);
5. peak memory of the web and worker processes of sections 1 and 3 (bench/memory.py);
6. fuzz: 100,000 fuzzed deliveries, answers by status, any 5xx with its cause (bench/fuzz.py);
7. sandbox: what the sandbox costs a job, the command bare and in bubblewrap
   (bench/sandbox_cost.py).

Each section's module measures and returns its figures; bench/report.py writes them as Markdown.

Usage: ./run bench [--rounds N] [--seconds S] [--output PATH] [--only SECTION ...]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from bench import (
    acknowledge,
    backlog,
    checkout,
    fuzz,
    machine,
    memory,
    processed,
    report,
    sandbox_cost,
    web_profile,
)
from bench.payloads import make_payloads
from bench.stage import HERE, Stage

SECTIONS = ("acknowledge", "backlog", "processed", "checkout", "fuzz", "sandbox")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--output", default=str(HERE / "RESULTS.md"))
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="run only these sections (for investigating; RESULTS.md wants them all)",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("bench: wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    lines: list[str] = []

    def emit(section: list[str]) -> None:
        """Add a section's lines to the results, and show them as they come."""
        lines.extend(section)
        print("\n".join(section), flush=True)

    home = Path(tempfile.mkdtemp(prefix="ghapp-bench-"))
    try:
        with Stage(home) as stage:
            payloads = make_payloads(stage)
            sizes = {name: path.stat().st_size for name, path in payloads.items()}
            emit(report.header(machine.describe(), sizes))
            peaks: list[dict[str, float]] = []
            if "acknowledge" in args.only:
                acknowledged = acknowledge.measure(stage, payloads, args.rounds, args.seconds)
                peaks.append(acknowledged.peaks)
                emit(report.acknowledge(acknowledged))
                emit(report.web_profile(web_profile.measure(stage, payloads, args.seconds)))
            if "backlog" in args.only:
                emit(report.backlog(backlog.measure(stage, payloads, args.rounds, args.seconds)))
            if "processed" in args.only:
                pushed = processed.measure(stage)
                peaks.append(pushed.peaks)
                emit(report.processed(pushed))
            if "checkout" in args.only:
                emit(report.checkout(checkout.measure(stage, args.rounds)))
            emit(report.memory(memory.measure(*peaks)))
            if "fuzz" in args.only:
                emit(report.fuzz(fuzz.measure(stage)))
            if "sandbox" in args.only:
                emit(report.sandbox(sandbox_cost.measure()))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    report.write(Path(args.output), lines)
    print(f"bench: results written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
