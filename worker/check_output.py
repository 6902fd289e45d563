"""What a check run or commit status says about a job, decided without I/O: its conclusion,
title, Markdown summary, output text and annotations, within GitHub's limits.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .step_report import Annotation, StepReport

# GitHub's limits: output.summary and output.text hold at most 65,535 characters each and as
# many bytes of UTF-8 (it counts both), a request at most 50 annotations, a commit status's
# description 140 characters.
MAX_OUTPUT = 65_535
ANNOTATIONS_PER_REQUEST = 50
MAX_DESCRIPTION = 140
MAX_TITLE = 255  # one line in GitHub's checks list: longer is cut
STEP_LABEL = 60  # characters of the command shown in a title
CUT_NOTE = "\n\n… cut to GitHub's limit of 65,535 characters"

# What happened to a job, as ghapp saw it, and the check run conclusion it gives.
STATES = {
    "passed": "success",
    "failed": "failure",
    "timed_out": "timed_out",
    "cancelled": "cancelled",
    "superseded": "skipped",
}
# Commit status state per conclusion (statuses know only four; a commit skipped for a newer one
# gets none: it was never processed, and no status is grey).
STATUS_STATES = {
    "success": "success",
    "neutral": "success",
    "failure": "failure",
    "timed_out": "error",
    "cancelled": "error",
}


@dataclass(frozen=True)
class Facts:
    """What ghapp knows of one job when it ends."""

    state: str  # a key of STATES
    step: str  # what ran: the command, "PROCESSOR module:function", or "checkout"
    sha: str
    ref: str
    delivery: str
    seconds: Mapping[str, float] = field(default_factory=dict)  # fetch, processing
    exit_status: int | None = None
    output: str = ""
    reason: str = ""  # why it failed or was cancelled, one line
    newer_sha: str | None = None  # superseded: the commit processed instead
    job_timeout: int | None = None


@dataclass(frozen=True)
class Verdict:
    """A check run's conclusion and output."""

    conclusion: str
    title: str
    summary: str
    text: str | None = None
    annotations: tuple[Annotation, ...] = ()


def step_label(command: str | None, processor: str | None) -> str:
    if command:
        one_line = " ".join(command.split())
        return one_line if len(one_line) <= STEP_LABEL else one_line[: STEP_LABEL - 1] + "…"
    if processor:
        return f"PROCESSOR {processor}"
    return "checkout"


def verdict(
    facts: Facts,
    report: StepReport | None = None,
    *,
    line_count: Callable[[str], int | None] = lambda path: None,
) -> Verdict:
    """The check run for ``facts``; what the step reported overrides ghapp's own conclusion,
    title, summary and text when it passed or failed. ``line_count(path)``: the lines of a file
    of the checkout, None if it is not one (its annotations are dropped)."""
    conclusion = STATES[facts.state]
    title = _title(facts)
    summary = _summary(facts)
    text = _output_block(facts.output) if facts.output else None
    report = report or StepReport()
    notes = list(report.problems)
    annotations: tuple[Annotation, ...] = ()
    if facts.state in ("passed", "failed"):
        conclusion = report.conclusion or conclusion
        title = report.title or title
        summary = report.summary if report.summary is not None else summary
        text = report.text if report.text is not None else text
        annotations, dropped = _kept_annotations(report.annotations, line_count)
        notes += dropped
    if notes:
        summary += "\n\n**Notes**\n" + "".join(f"\n- {_one_line(note)}" for note in notes)
    return Verdict(
        conclusion=conclusion,
        title=_cut_title(title),
        summary=_cut(summary),
        text=None if text is None else _cut(text),
        annotations=annotations,
    )


def _title(facts: Facts) -> str:
    seconds = sum(facts.seconds.values())
    if facts.state == "passed":
        return f"{facts.step} passed in {seconds:.1f} s"
    if facts.state == "failed":
        if facts.exit_status is not None:
            return f"{facts.step} failed: exit {facts.exit_status}"
        return f"{facts.step} failed: {facts.reason}"
    if facts.state == "timed_out":
        limit = f" after {facts.job_timeout} s" if facts.job_timeout else ""
        return f"{facts.step} timed out{limit}"
    if facts.state == "superseded":
        return f"skipped: {(facts.newer_sha or 'a newer commit')[:12]} was processed instead"
    return f"not processed: {facts.reason}"


def _summary(facts: Facts) -> str:
    lines = [f"Commit `{facts.sha}` on `{facts.ref}` (delivery `{facts.delivery}`)."]
    if facts.state == "superseded":
        newer = f"`{facts.newer_sha}`" if facts.newer_sha else "a newer commit"
        lines.append(
            f"\nA newer push of `{facts.ref}` arrived before this one was processed: "
            f"{newer} was processed instead."
        )
        return "\n".join(lines)
    if facts.seconds:
        lines.append("\n| step | seconds |\n|---|---:|")
        lines += [f"| {name} | {value:.2f} |" for name, value in facts.seconds.items()]
    if facts.exit_status is not None:
        lines.append(f"\nExit status: **{facts.exit_status}**.")
    if facts.reason and facts.state != "passed":
        lines.append(f"\n{_one_line(facts.reason)}")
    return "\n".join(lines)


def _output_block(output: str) -> str:
    """``output`` in a fenced block that nothing in it can close."""
    longest = max((len(run) for run in re.findall(r"`+", output)), default=0)
    fence = "`" * max(3, longest + 1)
    text = f"{fence}\n{output.rstrip()}\n{fence}"
    if _size(text) > MAX_OUTPUT:  # keep the end: the last lines say what went wrong
        head = f"{fence}\n[… earlier output cut …]\n"
        tail = f"\n{fence}"
        keep = MAX_OUTPUT - _size(head) - _size(tail)
        text = head + _last_bytes(output.rstrip(), keep) + tail
    return text


def _size(text: str) -> int:
    """What GitHub measures: characters and UTF-8 bytes, whichever is more."""
    return len(text.encode("utf-8", errors="replace"))


def _first_bytes(text: str, limit: int) -> str:
    """The longest start of ``text`` whose UTF-8 takes at most ``limit`` bytes."""
    return text.encode("utf-8", errors="replace")[:limit].decode("utf-8", errors="ignore")


def _last_bytes(text: str, limit: int) -> str:
    """The longest end of ``text`` whose UTF-8 takes at most ``limit`` bytes."""
    data = text.encode("utf-8", errors="replace")
    return data[max(0, len(data) - limit) :].decode("utf-8", errors="ignore")


def _kept_annotations(
    annotations: tuple[Annotation, ...], line_count: Callable[[str], int | None]
) -> tuple[tuple[Annotation, ...], list[str]]:
    """The annotations GitHub will take (a file of the checkout, lines within it), and notes on
    the ones dropped (GitHub refuses a whole request for one bad annotation)."""
    kept: list[Annotation] = []
    no_file: list[str] = []
    past_end: list[str] = []
    counts: dict[str, int | None] = {}
    for annotation in annotations:
        path = _checkout_path(annotation.path)
        if path is None:
            no_file.append(annotation.path)
            continue
        if path not in counts:
            counts[path] = line_count(path)
        count = counts[path]
        if count is None:
            no_file.append(annotation.path)
        elif annotation.end_line > max(count, 1):
            past_end.append(f"{path}:{annotation.end_line}")
        else:
            kept.append(Annotation(**{**annotation.__dict__, "path": path}))
    notes = []
    if no_file:
        notes.append(
            f"{len(no_file)} annotation(s) dropped: no such file in the checkout "
            f"(e.g. `{no_file[0][:200]}`)"
        )
    if past_end:
        notes.append(
            f"{len(past_end)} annotation(s) dropped: past the end of their file "
            f"(e.g. `{past_end[0][:200]}`)"
        )
    return tuple(kept), notes


def _checkout_path(path: str) -> str | None:
    """``path`` relative to the checkout's root, or None if it points outside it or into .git."""
    normal = posixpath.normpath(path.strip().removeprefix("./"))
    if normal.startswith(("/", "../")) or normal in (".", "..") or "\x00" in normal:
        return None
    if normal == ".git" or normal.startswith(".git/"):
        return None
    return normal


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _cut(text: str) -> str:
    if _size(text) <= MAX_OUTPUT:
        return text
    return _first_bytes(text, MAX_OUTPUT - _size(CUT_NOTE)) + CUT_NOTE


def _cut_title(title: str) -> str:
    line = _one_line(title) or "ghapp"
    return line if len(line) <= MAX_TITLE else line[: MAX_TITLE - 1] + "…"


def description(title: str) -> str:
    """A commit status's description: the title, cut to GitHub's 140 characters."""
    line = _one_line(title)
    return line if len(line) <= MAX_DESCRIPTION else line[: MAX_DESCRIPTION - 1] + "…"


# GitHub request bodies ---------------------------------------------------------------------


def started_body(
    *, name: str, sha: str, external_id: str, started_at: str, details_url: str | None
) -> dict[str, Any]:
    """``POST /repos/{o}/{r}/check-runs`` for a job that starts processing."""
    body: dict[str, Any] = {
        "name": name,
        "head_sha": sha,
        "status": "in_progress",
        "started_at": started_at,
        "external_id": external_id,
    }
    if details_url:
        body["details_url"] = details_url
    return body


def completion_bodies(result: Verdict, *, completed_at: str) -> Iterator[dict[str, Any]]:
    """The PATCHes that complete a check run: annotations 50 a request (GitHub appends them),
    then the completion."""
    output: dict[str, Any] = {"title": result.title, "summary": result.summary}
    if result.text is not None:
        output["text"] = result.text
    for i in range(0, len(result.annotations), ANNOTATIONS_PER_REQUEST):
        batch = result.annotations[i : i + ANNOTATIONS_PER_REQUEST]
        yield {"output": {**output, "annotations": [a.as_github() for a in batch]}}
    # The completion carries no annotation: sending it twice (a retry) changes nothing.
    yield {
        "status": "completed",
        "conclusion": result.conclusion,
        "completed_at": completed_at,
        "output": output,
    }


def minimal_completion(result: Verdict, *, completed_at: str, refusal: str) -> dict[str, Any]:
    """A completion GitHub cannot refuse for its size, when it refused the full one."""
    return {
        "status": "completed",
        "conclusion": result.conclusion,
        "completed_at": completed_at,
        "output": {
            "title": result.title,
            "summary": _cut(f"GitHub refused this check run's full report: {_one_line(refusal)}"),
        },
    }


def status_body(
    state: str, *, context: str, description_text: str, target_url: str | None
) -> dict[str, Any]:
    """``POST /repos/{o}/{r}/statuses/{sha}``."""
    body: dict[str, Any] = {
        "state": state,
        "context": context,
        "description": description(description_text),
    }
    if target_url:
        body["target_url"] = target_url
    return body
