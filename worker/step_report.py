"""What the processing step may say about its own result: the file at GHAPP_RESULT_PATH, or a
PROCESSOR's returned dict, read defensively (the command is untrusted) into a ``StepReport``.

A malformed report never fails the job: what was wrong is kept in ``problems`` for the summary,
and the exit status decides.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONCLUSIONS = ("success", "failure", "neutral")
LEVELS = ("notice", "warning", "failure")
# Bytes of the result file read at most: a report past this is refused whole (it would not fit
# a check run anyway: 65,535 characters of summary and of text, 1,000 annotations).
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_ANNOTATIONS = 1000  # GitHub shows at most this many per check run
MAX_LINE = 10**9
# GitHub's limits for one annotation: a title of 255 characters, a message of 64 KB.
MAX_ANNOTATION_TITLE = 255
MAX_ANNOTATION_MESSAGE = 64 * 1024
TEXT_KEYS = ("title", "summary", "text")


@dataclass(frozen=True)
class Annotation:
    """One line range of one file, flagged with a message (GitHub's annotation fields)."""

    path: str
    start_line: int
    end_line: int
    annotation_level: str
    message: str
    title: str | None = None

    def as_github(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "path": self.path,
            "start_line": self.start_line,
            "end_line": self.end_line,
            "annotation_level": self.annotation_level,
            "message": self.message,
        }
        if self.title:
            fields["title"] = self.title
        return fields


@dataclass(frozen=True)
class StepReport:
    """What the step said; every field optional. ``problems``: what was wrong with it."""

    conclusion: str | None = None
    title: str | None = None
    summary: str | None = None
    text: str | None = None
    annotations: tuple[Annotation, ...] = ()
    problems: tuple[str, ...] = ()


def parse_result(data: bytes, source: str = "GHAPP_RESULT_PATH") -> StepReport:
    """The report in the result file's bytes; empty bytes: no report."""
    if not data.strip():
        return StepReport()
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return StepReport(problems=(f"{source} is not UTF-8 (byte {exc.start}): ignored",))
    except json.JSONDecodeError as exc:
        return StepReport(
            problems=(
                f"{source} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                f"{exc.msg}): ignored",
            )
        )
    if not isinstance(value, dict):
        return StepReport(problems=(f"{source} does not hold a JSON object: ignored",))
    return from_mapping(value, source)


def from_mapping(value: Mapping[str, Any], source: str) -> StepReport:
    """The report in a mapping (a parsed result file, or what a PROCESSOR returned); keys it
    does not know are left alone (a PROCESSOR's result may hold anything)."""
    problems: list[str] = []
    conclusion = value.get("conclusion")
    if conclusion is not None and conclusion not in CONCLUSIONS:
        problems.append(
            f"{source}: 'conclusion' {str(conclusion)[:40]!r} is not one of "
            f"{', '.join(CONCLUSIONS)}: ignored"
        )
        conclusion = None
    texts: dict[str, str | None] = {}
    for key in TEXT_KEYS:
        item = value.get(key)
        if item is not None and not isinstance(item, str):
            problems.append(f"{source}: '{key}' is not a string: ignored")
            item = None
        texts[key] = item
    annotations: list[Annotation] = []
    raw = value.get("annotations")
    if raw is not None and not isinstance(raw, list):
        problems.append(f"{source}: 'annotations' is not a list: ignored")
    elif raw:
        for index, item in enumerate(raw):
            if len(annotations) >= MAX_ANNOTATIONS:
                problems.append(
                    f"{source}: {len(raw) - index} annotations past GitHub's "
                    f"{MAX_ANNOTATIONS} dropped"
                )
                break
            annotation = _annotation(item)
            if isinstance(annotation, str):
                problems.append(f"{source}: annotation {index + 1} {annotation}: dropped")
            else:
                annotations.append(annotation)
    return StepReport(
        conclusion=conclusion,
        title=texts["title"],
        summary=texts["summary"],
        text=texts["text"],
        annotations=tuple(annotations),
        problems=tuple(problems[:20]),
    )


def _annotation(item: Any) -> Annotation | str:
    """The annotation, or what is wrong with it."""
    if not isinstance(item, dict):
        return "is not an object"
    for key in ("path", "message"):
        if not isinstance(item.get(key), str) or not item[key]:
            return f"has no '{key}' string"
    lines = []
    for key in ("start_line", "end_line"):
        number = item.get(key)
        if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= MAX_LINE:
            return f"has no positive '{key}'"
        lines.append(number)
    if lines[1] < lines[0]:
        return "ends before it starts"
    level = item.get("annotation_level", "warning")
    if level not in LEVELS:
        return f"'annotation_level' is not one of {', '.join(LEVELS)}"
    title = item.get("title")
    message = item["message"]
    if len(message.encode("utf-8", errors="replace")) > MAX_ANNOTATION_MESSAGE:
        message = (
            message.encode("utf-8", errors="replace")[: MAX_ANNOTATION_MESSAGE - 8]
            .decode("utf-8", errors="ignore")
            .rstrip()
            + " […]"
        )
    if isinstance(title, str) and len(title) > MAX_ANNOTATION_TITLE:
        title = title[: MAX_ANNOTATION_TITLE - 1] + "…"
    return Annotation(
        path=item["path"][:1024],
        start_line=lines[0],
        end_line=lines[1],
        annotation_level=level,
        message=message,
        title=title if isinstance(title, str) else None,
    )


def read_result_file(path: Path) -> StepReport:
    """The report the command left at ``path``. Never follows a link, reads only a regular file
    and at most MAX_FILE_BYTES: the command chose what is there."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return StepReport()
    except OSError as exc:
        return StepReport(
            problems=(f"GHAPP_RESULT_PATH could not be read ({exc.strerror}): ignored",)
        )
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return StepReport(problems=("GHAPP_RESULT_PATH is not a regular file: ignored",))
        if info.st_size > MAX_FILE_BYTES:
            return StepReport(
                problems=(
                    f"GHAPP_RESULT_PATH holds {info.st_size} bytes, more than the "
                    f"{MAX_FILE_BYTES} read: ignored",
                )
            )
        data = _read_up_to(fd, MAX_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        return StepReport(problems=("GHAPP_RESULT_PATH grew past the bytes read: ignored",))
    return parse_result(data)


# Bytes of a file read at most to count its lines for annotations: past this, lines beyond what
# was read are taken as out of range; and bytes read in all for one job's annotations: past
# this, the files not yet counted are taken as unknown (their annotations dropped, with a note).
MAX_COUNTED_BYTES = 64 * 1024 * 1024
MAX_COUNTED_IN_ALL = 256 * 1024 * 1024


def line_counter(checkout: Path) -> Callable[[str], int | None]:
    """``count(path)``: the lines of the regular file ``path`` of ``checkout``; None if it is not
    one (missing, a directory, or a link leading out of the checkout)."""
    root = checkout.resolve()
    counted: dict[Path, int | None] = {}  # by the file a path leads to: links count once
    budget = [MAX_COUNTED_IN_ALL]

    def count(path: str) -> int | None:
        try:
            real = (root / path).resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if root not in real.parents:
            return None
        if real not in counted:
            counted[real] = lines_of(real) if budget[0] > 0 else None
        return counted[real]

    def lines_of(real: Path) -> int | None:
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            data = _read_up_to(fd, min(MAX_COUNTED_BYTES, budget[0]))
        finally:
            os.close(fd)
        budget[0] -= len(data)
        return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)

    return count


def _read_up_to(fd: int, limit: int) -> bytes:
    chunks = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, 1024 * 1024))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
