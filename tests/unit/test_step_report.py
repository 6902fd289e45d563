"""What the processing step reports of itself: the result file and a PROCESSOR's dict, read so a
malformed or hostile one becomes a note, never a crash or a leak."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from worker.step_report import (
    MAX_ANNOTATIONS,
    MAX_FILE_BYTES,
    Annotation,
    StepReport,
    from_mapping,
    line_counter,
    parse_result,
    read_result_file,
)

ANNOTATION = {
    "path": "src/app.py",
    "start_line": 3,
    "end_line": 4,
    "annotation_level": "failure",
    "message": "undefined name",
    "title": "F821",
}


def test_a_full_report_is_read() -> None:
    data = {
        "conclusion": "neutral",
        "title": "3 warnings",
        "summary": "**ok**",
        "text": "details",
        "annotations": [ANNOTATION],
    }
    report = parse_result(json.dumps(data).encode())
    assert report == StepReport(
        conclusion="neutral",
        title="3 warnings",
        summary="**ok**",
        text="details",
        annotations=(Annotation(**ANNOTATION),),
    )
    assert report.annotations[0].as_github() == ANNOTATION


def test_every_key_is_optional_and_an_empty_file_is_no_report() -> None:
    assert parse_result(b"") == StepReport()
    assert parse_result(b"  \n") == StepReport()
    assert parse_result(b"{}") == StepReport()
    assert parse_result(b'{"title": "only a title"}').title == "only a title"


def test_invalid_json_is_a_problem_naming_its_line() -> None:
    report = parse_result(b'{\n  "title": "x",\n  "summary" "y"\n}')
    assert report.title is None
    (problem,) = report.problems
    assert "not valid JSON" in problem
    assert "line 3" in problem


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"[1, 2]", "not hold a JSON object"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"conclusion": "passed"}', "'conclusion'"),
        (b'{"summary": 5}', "'summary' is not a string"),
        (b'{"annotations": {}}', "'annotations' is not a list"),
    ],
)
def test_malformed_reports_are_problems_not_crashes(data: bytes, problem: str) -> None:
    report = parse_result(data)
    assert any(problem in p for p in report.problems), report.problems
    assert report.conclusion is None


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"path": ""}, "'path'"),
        ({"message": None}, "'message'"),
        ({"start_line": 0}, "'start_line'"),
        ({"end_line": True}, "'end_line'"),
        ({"start_line": 9, "end_line": 2}, "ends before it starts"),
        ({"annotation_level": "error"}, "annotation_level"),
    ],
)
def test_a_bad_annotation_is_dropped_with_a_note_and_the_rest_kept(change, problem) -> None:
    report = from_mapping({"annotations": [{**ANNOTATION, **change}, ANNOTATION]}, "R")
    assert report.annotations == (Annotation(**ANNOTATION),)
    (note,) = report.problems
    assert note.startswith("R: annotation 1 ")
    assert problem in note


def test_annotations_past_githubs_thousand_are_dropped_with_a_note() -> None:
    report = from_mapping({"annotations": [ANNOTATION] * (MAX_ANNOTATIONS + 5)}, "R")
    assert len(report.annotations) == MAX_ANNOTATIONS
    assert any("5 annotations past" in p for p in report.problems)


def test_a_processors_other_keys_are_left_alone() -> None:
    assert from_mapping({"files": 3, "conclusion": "failure"}, "P") == StepReport(
        conclusion="failure"
    )


def test_the_result_file_is_read_when_regular(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    assert read_result_file(path) == StepReport()  # none written
    path.write_text('{"conclusion": "failure"}')
    assert read_result_file(path).conclusion == "failure"


def test_a_result_file_that_is_a_link_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "app.pem"
    secret.write_text('{"summary": "the key"}')
    path = tmp_path / "result.json"
    path.symlink_to(secret)
    report = read_result_file(path)
    assert report.summary is None
    assert report.problems


def test_a_result_file_that_is_a_fifo_does_not_block(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    os.mkfifo(path)
    report = read_result_file(path)
    assert "not a regular file" in report.problems[0]


def test_an_oversized_result_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    with path.open("wb") as file:
        file.truncate(MAX_FILE_BYTES + 1)
    assert "more than the" in read_result_file(path).problems[0]


def test_line_counter_counts_files_of_the_checkout_only(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "src").mkdir(parents=True)
    (checkout / "src" / "a.py").write_text("one\ntwo\nthree")
    (checkout / "empty").write_text("")
    outside = tmp_path / "outside.txt"
    outside.write_text("x\n" * 100)
    (checkout / "escape").symlink_to(outside)
    (checkout / "inside").symlink_to(checkout / "src" / "a.py")
    count = line_counter(checkout)
    assert count("src/a.py") == 3
    assert count("inside") == 3
    assert count("empty") == 0
    assert count("escape") is None
    assert count("../outside.txt") is None
    assert count("src") is None
    assert count("missing.py") is None


def test_an_annotations_title_and_message_are_cut_to_githubs_limits() -> None:
    item = {**ANNOTATION, "title": "t" * 300, "message": "é" * 40_000}
    (annotation,) = from_mapping({"annotations": [item]}, "R").annotations
    assert len(annotation.title or "") == 255
    assert len(annotation.message.encode()) <= 64 * 1024
    assert annotation.message.endswith("[…]")


def test_lines_are_counted_once_per_file_and_within_a_budget(tmp_path: Path, monkeypatch) -> None:
    import worker.step_report as step_report

    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "big.txt").write_text("line\n" * 1000)  # 5,000 bytes
    for n in range(20):
        (checkout / f"link{n}").symlink_to(checkout / "big.txt")
    (checkout / "other.txt").write_text("x\n")
    monkeypatch.setattr(step_report, "MAX_COUNTED_IN_ALL", 6_000)
    count = line_counter(checkout)
    assert [count(f"link{n}") for n in range(20)] == [1000] * 20  # read once: within budget
    assert count("big.txt") == 1000
    assert count("other.txt") == 1  # 5,002 of 6,000 bytes read
    (checkout / "third.txt").write_text("y\n" * 1000)
    assert count("third.txt") == 499  # the 998 bytes left: later lines count as past the end
    (checkout / "fourth.txt").write_text("z\n")
    assert count("fourth.txt") is None  # the budget is spent: not counted
