"""Section 5, peak memory: the high-water mark of resident memory (VmHWM) of the processes the
other sections ran. They read it while their processes still run (web workers in
``acknowledge``, worker processes in ``processed``); this section gathers what they found."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tests.support import process_children


def peak_rss_mib(pid: int) -> float:
    """The peak resident memory of ``pid`` so far, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children_peak_mib(pid: int) -> float:
    """The largest peak among ``pid``'s children (a gunicorn master's workers)."""
    return max(map(peak_rss_mib, process_children().get(pid, [])), default=0.0)


def measure(*found: Mapping[str, float]) -> dict[str, float]:
    """Peak RSS in MiB by process, from the sections that ran (each section's ``peaks``)."""
    peaks: dict[str, float] = {}
    for section in found:
        peaks.update(section)
    return peaks
