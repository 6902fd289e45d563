"""Log lines: text or JSON, each with its delivery and RQ job, RQ's own lines included; a job
failing as ghapp foresaw logs one line, without RQ's traceback."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest
import redis
from rq import Queue

from ghapp.core.logs import DeliveryContext, JsonFormatter, configure_logging, remember_job
from worker.failures import Permanent
from worker.processing import ProcessingError
from worker.run import GhappJob, GhappWorker, failure_line


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    """configure_logging replaces the root logger's handlers: give the next tests theirs back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def say_hello() -> str:
    """A job for the worker below."""
    logging.getLogger("ghapp.test").info("hello from the job")
    return "hello"


def fail_for_good() -> None:
    raise ProcessingError(
        "PROCESS_COMMAND exited with status 3; last output:\nfirst\nsecond\n",
        reason="PROCESS_COMMAND exited with status 3",
        output="first\nsecond\n",
        exit_status=3,
    )


def fail_unforeseen() -> None:
    raise ZeroDivisionError("nobody saw this coming")


def record(
    name: str = "ghapp.test", msg: str = "hi", args: tuple[object, ...] = ()
) -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)


def formatted(rec: logging.LogRecord) -> dict[str, object]:
    DeliveryContext().filter(rec)
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    return json.loads(line)


def test_a_json_line_has_every_field() -> None:
    rec = record(msg="answered %s", args=(202,))
    rec.delivery = "d-42"
    line = formatted(rec)
    assert set(line) == {"time", "level", "process", "logger", "message", "delivery", "job"}
    assert line["message"] == "answered 202"
    assert (line["level"], line["logger"], line["delivery"], line["job"]) == (
        "INFO",
        "ghapp.test",
        "d-42",
        None,
    )
    assert isinstance(line["process"], int)
    when = datetime.fromisoformat(str(line["time"]))
    offset = when.utcoffset()
    assert offset is not None
    assert offset.total_seconds() == 0


def test_a_json_line_without_a_delivery_says_null_and_keeps_the_exception_text() -> None:
    try:
        raise ValueError("broken\non two lines")
    except ValueError:
        import sys

        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "it failed", (), sys.exc_info())
    line = formatted(rec)
    assert line["delivery"] is None
    assert "ValueError: broken\non two lines" in str(line["exc_info"])


def test_rqs_lines_naming_a_known_job_carry_its_delivery() -> None:
    job_id = uuid.uuid4().hex
    remember_job(job_id, "d-rq")
    line = formatted(
        record("rq.worker", "Worker %s: %s: %s (%s)", ("w1", "ghapp", "Job OK", job_id))
    )
    assert (line["delivery"], line["job"]) == ("d-rq", job_id)
    other = formatted(record("rq.worker", "Worker %s: idle", ("w1",)))
    assert (other["delivery"], other["job"]) == (None, None)


def test_text_lines_say_the_delivery() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "text")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    logging.getLogger("ghapp.test").info("queued", extra={"delivery": "d-7"})
    assert "ghapp.test [delivery d-7]: queued" in stream.getvalue()


def test_a_failure_line_is_one_line_with_the_reason_and_the_outputs_tail() -> None:
    class FakeJob:
        id = "abc"
        retries_left = 0

    exc = ProcessingError("x", reason="PROCESS_COMMAND exited with status 3", output="a\nb\n")
    line = failure_line(FakeJob(), exc)  # type: ignore[arg-type]
    assert (
        line
        == "job abc failed for good: PROCESS_COMMAND exited with status 3; output's tail: a ⏎ b"
    )
    assert (
        failure_line(FakeJob(), Permanent("no access\nmore"))
        == "job abc failed for good: no access"
    )  # type: ignore[arg-type]


@pytest.fixture
def queue(redis_client: redis.Redis) -> Iterator[Queue]:
    queue = Queue(f"test-logs-{uuid.uuid4().hex[:8]}", connection=redis_client)
    yield queue
    queue.delete(delete_jobs=True)


def run_jobs(queue: Queue, capfd: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    configure_logging("INFO", "json")
    worker = GhappWorker([queue], connection=queue.connection, job_class=GhappJob)
    worker.work(burst=True, logging_level="INFO")
    captured = capfd.readouterr()
    lines = [line for line in (captured.err + captured.out).splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line is JSON


def test_a_workers_lines_about_a_job_carry_its_delivery_and_job_id(
    queue: Queue, capfd: pytest.CaptureFixture[str]
) -> None:
    job = queue.enqueue(say_hello, meta={"delivery": "d-ok"})
    lines = run_jobs(queue, capfd)
    about = [line for line in lines if line["job"] == job.id]
    messages = [str(line["message"]) for line in about]
    assert any("Job OK" in m for m in messages), lines
    assert any("say_hello" in m for m in messages), lines  # the line RQ logs as it takes it
    assert "hello from the job" in messages
    assert {line["delivery"] for line in about} == {"d-ok"}
    assert all(line["delivery"] is None for line in lines if line["job"] is None)


def test_a_foreseen_failure_is_one_line_and_an_unforeseen_one_keeps_rqs_traceback(
    queue: Queue, capfd: pytest.CaptureFixture[str]
) -> None:
    foreseen = queue.enqueue(fail_for_good, meta={"delivery": "d-fail"})
    unforeseen = queue.enqueue(fail_unforeseen, meta={"delivery": "d-oops"})
    lines = run_jobs(queue, capfd)
    errors = [line for line in lines if line["level"] == "ERROR" and line["job"] == foreseen.id]
    assert [e["message"] for e in errors] == [
        f"job {foreseen.id} failed for good: PROCESS_COMMAND exited with status 3; "
        "output's tail: first ⏎ second"
    ]
    assert errors[0]["delivery"] == "d-fail"
    assert not any("Traceback" in str(line) for line in lines if line["job"] == foreseen.id)
    rq_line = [line for line in lines if line["job"] == unforeseen.id and line["level"] == "ERROR"]
    assert any("ZeroDivisionError" in str(line["message"]) for line in rq_line), lines
    assert foreseen.get_status(refresh=True) == "failed"
    assert unforeseen.get_status(refresh=True) == "failed"


def test_a_flood_of_one_kind_is_one_line_a_second_with_the_count_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from ghapp.core.logs import Throttled

    clock = [100.0]
    logger = logging.getLogger("ghapp.test.throttle")
    throttled = Throttled(logger, interval=1.0, clock=lambda: clock[0])
    with caplog.at_level(logging.WARNING, logger="ghapp.test.throttle"):
        for _ in range(50):
            throttled.warning("401 bad signature", "refused with %s", 401)
        throttled.warning("400 bad body", "refused with %s", 400)
        clock[0] += 1.5
        throttled.warning("401 bad signature", "refused with %s", 401)
        clock[0] += 1.5
        throttled.warning("403 wrong app", "refused with %s", 403)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "refused with 401",
        "refused with 400",
        "refused with 401 (49 more like it in the last 1 s not logged)",
        "refused with 403",
    ]


def test_held_back_counts_of_a_quiet_kind_are_said_on_the_next_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from ghapp.core.logs import Throttled

    clock = [0.0]
    throttled = Throttled(logging.getLogger("ghapp.test.quiet"), clock=lambda: clock[0])
    with caplog.at_level(logging.WARNING, logger="ghapp.test.quiet"):
        for _ in range(10):
            throttled.warning("a", "kind a")
        clock[0] += 5
        throttled.warning("b", "kind b")
    assert [r.getMessage() for r in caplog.records] == [
        "kind a",
        "kind b (9 of other kinds not logged since)",
    ]
