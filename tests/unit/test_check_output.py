"""What a check run says about a job: conclusions, titles, summaries, output and annotations
within GitHub's limits, and the requests that complete it."""

from __future__ import annotations

import pytest

from worker.check_output import (
    ANNOTATIONS_PER_REQUEST,
    MAX_OUTPUT,
    MAX_TITLE,
    Facts,
    completion_bodies,
    description,
    status_body,
    step_label,
    verdict,
)
from worker.step_report import Annotation, StepReport

SHA = "c" * 40


def facts(state: str = "passed", **changes) -> Facts:
    fields = {
        "state": state,
        "step": "make check",
        "sha": SHA,
        "ref": "refs/heads/main",
        "delivery": "d-1",
        "seconds": {"fetch": 1.25, "processing": 11.05},
        "exit_status": 0,
        "output": "all good\n",
    }
    fields.update(changes)
    return Facts(**fields)


def annotation(path: str = "a.py", line: int = 1) -> Annotation:
    return Annotation(path, line, line, "warning", "look here")


@pytest.mark.parametrize(
    ("state", "changes", "conclusion", "title"),
    [
        ("passed", {}, "success", "make check passed in 12.3 s"),
        ("failed", {"exit_status": 2}, "failure", "make check failed: exit 2"),
        ("failed", {"exit_status": None, "reason": "PROCESSOR x raised"}, "failure", "x raised"),
        ("timed_out", {"job_timeout": 600}, "timed_out", "make check timed out after 600 s"),
        ("cancelled", {"reason": "the App was uninstalled"}, "cancelled", "App was uninstalled"),
        ("superseded", {"newer_sha": "d" * 40}, "skipped", "dddddddddddd was processed"),
    ],
)
def test_each_end_has_its_conclusion_and_a_one_line_title(state, changes, conclusion, title):
    result = verdict(facts(state, **changes))
    assert result.conclusion == conclusion
    assert title in result.title
    assert "\n" not in result.title


def test_the_summary_names_the_commit_durations_and_exit_status() -> None:
    summary = verdict(facts("failed", exit_status=2)).summary
    assert f"`{SHA}`" in summary
    assert "| fetch | 1.25 |" in summary
    assert "| processing | 11.05 |" in summary
    assert "Exit status: **2**" in summary


def test_a_superseded_summary_names_the_newer_commit() -> None:
    summary = verdict(facts("superseded", newer_sha="d" * 40)).summary
    assert "`" + "d" * 40 + "` was processed instead" in summary


def test_the_output_tail_is_a_fenced_block_nothing_in_it_can_close() -> None:
    text = verdict(facts(output="```\n# heading\n````")).text
    assert text is not None
    assert text.startswith("`````\n")
    assert text.endswith("\n`````")


def test_what_the_step_reported_overrides_ghapps_own_words() -> None:
    report = StepReport(conclusion="neutral", title="2 warnings", summary="see below", text="t")
    result = verdict(facts(), report)
    assert (result.conclusion, result.title, result.summary, result.text) == (
        "neutral",
        "2 warnings",
        "see below",
        "t",
    )


def test_a_failed_step_may_still_say_it_failed_its_own_way() -> None:
    report = StepReport(title="3 lint errors")
    result = verdict(facts("failed", exit_status=1), report)
    assert (result.conclusion, result.title) == ("failure", "3 lint errors")


@pytest.mark.parametrize("state", ["timed_out", "cancelled", "superseded"])
def test_the_step_cannot_turn_a_job_that_did_not_finish_into_a_success(state) -> None:
    result = verdict(facts(state, newer_sha="d" * 40), StepReport(conclusion="success"))
    assert result.conclusion != "success"


def test_problems_with_the_report_are_listed_in_the_summary() -> None:
    report = StepReport(problems=("GHAPP_RESULT_PATH is not valid JSON (line 3, column 2)",))
    summary = verdict(facts(), report).summary
    assert "**Notes**" in summary
    assert "line 3" in summary


def test_annotations_outside_the_checkout_or_past_a_files_end_are_dropped_with_notes() -> None:
    lines = {"a.py": 10, "b.py": 2}
    report = StepReport(
        annotations=(
            annotation("a.py", 10),
            annotation("./b.py", 2),
            annotation("b.py", 3),
            annotation("../etc/passwd"),
            annotation("/etc/passwd"),
            annotation(".git/config"),
            annotation("missing.py"),
        )
    )
    result = verdict(facts(), report, line_count=lines.get)
    assert [(a.path, a.end_line) for a in result.annotations] == [("a.py", 10), ("b.py", 2)]
    assert "4 annotation(s) dropped: no such file" in result.summary
    assert "1 annotation(s) dropped: past the end" in result.summary


def test_summary_and_text_are_cut_to_githubs_limit_with_a_note() -> None:
    report = StepReport(summary="s" * 100_000, text="t" * 100_000)
    result = verdict(facts(), report)
    assert len(result.summary.encode()) == MAX_OUTPUT  # GitHub counts bytes
    assert result.text is not None
    assert len(result.text.encode()) == MAX_OUTPUT
    assert result.summary.endswith("cut to GitHub's limit of 65,535 characters")


def test_a_huge_output_keeps_its_last_lines() -> None:
    output = "x" * 200_000 + "\nTHE END"
    text = verdict(facts(output=output)).text
    assert text is not None
    assert len(text) <= MAX_OUTPUT
    assert "THE END" in text


def test_a_long_title_is_cut_to_one_short_line() -> None:
    title = verdict(facts(), StepReport(title="word " * 200 + "\nsecond line")).title
    assert len(title) <= MAX_TITLE
    assert "\n" not in title


def test_non_ascii_output_is_cut_by_its_bytes_on_a_character_boundary() -> None:
    text = verdict(facts(output="✓" * 30_000)).text  # 30,000 characters, 90,000 bytes
    assert text is not None
    assert len(text.encode()) <= MAX_OUTPUT
    assert text.endswith("✓\n```")
    summary = verdict(facts(), StepReport(summary="é" * 40_000)).summary
    assert len(summary.encode()) <= MAX_OUTPUT
    assert summary.endswith("cut to GitHub's limit of 65,535 characters")


def test_annotations_go_fifty_a_request_then_the_completion_alone() -> None:
    report = StepReport(annotations=tuple(annotation("a.py", n) for n in range(1, 121)))
    result = verdict(facts(), report, line_count=lambda path: 500)
    bodies = list(completion_bodies(result, completed_at="2026-12-02T10:00:00Z"))
    sizes = [len(body["output"].get("annotations", [])) for body in bodies]
    assert sizes == [ANNOTATIONS_PER_REQUEST, ANNOTATIONS_PER_REQUEST, 20, 0]
    assert all("status" not in body for body in bodies[:-1])
    # The completion carries no annotation: a retry of it adds nothing twice.
    assert bodies[-1]["status"] == "completed"
    assert bodies[-1]["conclusion"] == "success"
    assert all(body["output"]["title"] == result.title for body in bodies)
    sent = [a["start_line"] for body in bodies for a in body["output"].get("annotations", [])]
    assert sent == list(range(1, 121))


def test_without_annotations_one_request_completes() -> None:
    (body,) = completion_bodies(verdict(facts()), completed_at="t")
    assert body["status"] == "completed"
    assert "annotations" not in body["output"]


def test_a_commit_status_description_is_cut_to_140_characters() -> None:
    body = status_body("failure", context="ci", description_text="y" * 500, target_url="https://x")
    assert len(body["description"]) == 140
    assert body == {**body, "state": "failure", "context": "ci", "target_url": "https://x"}
    assert description("short") == "short"


def test_the_step_is_named_by_its_command_or_processor() -> None:
    assert step_label("make   check", None) == "make check"
    assert len(step_label("x" * 500, None)) == 60
    assert step_label(None, "mod:fn") == "PROCESSOR mod:fn"
    assert step_label(None, None) == "checkout"
