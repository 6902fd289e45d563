"""Webhook deliveries: signatures, bodies, push classification and the whole read_delivery path."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest

from webapp.deliveries import (
    MAX_CLOCK_SKEW,
    ZERO_SHA,
    BadRequest,
    BadSignature,
    Ignored,
    InstallationChange,
    PushJob,
    WrongApp,
    classify_push,
    ledger_app,
    parse_body,
    read_delivery,
    signature_for,
    verify_signature,
)

SECRET = b"s3cret"
SHA = "a" * 40
BEFORE = "b" * 40
DELIVERY = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
NOW = 1_700_000_000.5  # when a push was received: no test reads a clock


def push_payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "ref": "refs/heads/main",
        "before": BEFORE,
        "after": SHA,
        "deleted": False,
        "installation": {"id": 7},
        "repository": {
            "id": 99,
            "full_name": "octo-org/hello",
            "clone_url": "https://github.com/octo-org/hello.git",
        },
    }
    payload.update(changes)
    return payload


def signed(
    event: str, payload: Any, *, secret: bytes = SECRET, **extra: str
) -> tuple[dict[str, str], bytes]:
    body = json.dumps(payload).encode()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": DELIVERY,
        "Content-Type": "application/json",
        "X-Hub-Signature-256": signature_for(body, secret),
        **extra,
    }
    return headers, body


# --- signatures -------------------------------------------------------------------------------


def test_signature_matches_githubs_published_vector() -> None:
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert signature_for(b"Hello, World!", b"It's a Secret to Everybody") == expected
    verify_signature(b"Hello, World!", expected, [b"It's a Secret to Everybody"])


def test_any_of_several_secrets_is_accepted_during_rotation() -> None:
    body = b'{"zen": "x"}'
    for secret in (b"old", b"new"):
        verify_signature(body, signature_for(body, secret), [b"old", b"new"])


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        signature_for(b"body", b"other-secret"),
        signature_for(b"other body", SECRET),
        "sha1=" + "0" * 40,
        "garbage",
    ],
)
def test_missing_or_wrong_signature_is_refused_with_401(signature: str | None) -> None:
    with pytest.raises(BadSignature) as info:
        verify_signature(b"body", signature, [SECRET])
    assert info.value.status == 401


def test_no_configured_secret_accepts_nothing() -> None:
    with pytest.raises(BadSignature):
        verify_signature(b"body", signature_for(b"body", b""), [])


def test_non_ascii_signature_header_is_a_401_not_a_crash() -> None:
    with pytest.raises(BadSignature):
        verify_signature(b"body", "sha256=\u00e9", [SECRET])


# --- bodies -----------------------------------------------------------------------------------


def test_json_body_is_parsed_and_kept_verbatim() -> None:
    body = b'{"a": [1, 2], "b": "c"}'
    payload, raw = parse_body(body, "application/json; charset=utf-8")
    assert payload == {"a": [1, 2], "b": "c"}
    assert raw == body


def test_missing_content_type_means_json() -> None:
    assert parse_body(b'{"a": 1}', None)[0] == {"a": 1}


def test_form_encoded_body_uses_its_payload_field() -> None:
    body = urlencode({"payload": '{"a": "b&c=d"}'}).encode()
    payload, raw = parse_body(body, "application/x-www-form-urlencoded")
    assert payload == {"a": "b&c=d"}
    assert json.loads(raw) == payload


@pytest.mark.parametrize(
    "body",
    [b"", b"a=b", b"payload=1&payload=2", b"payload=%ff%fe", b"\xff\xfe"],
)
def test_form_encoded_body_without_one_json_payload_is_400(body: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        parse_body(body, "application/x-www-form-urlencoded")
    assert info.value.status == 400


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"not json", b"[]", b'"text"', b"42", b"null", b"\xff\xfe{}"],
)
def test_bad_json_or_non_object_is_400(body: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        parse_body(body, "application/json")
    assert info.value.status == 400


@pytest.mark.parametrize(
    "body", [b"[" * 100_000, b'{"a":' * 100_000, b"[" * 100_000 + b"]" * 100_000]
)
def test_deeply_nested_json_is_400_not_recursion_error(body: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_body(body, "application/json")


def test_deeply_nested_form_payload_is_400() -> None:
    body = urlencode({"payload": "[" * 100_000}).encode()
    with pytest.raises(BadRequest):
        parse_body(body, "application/x-www-form-urlencoded")


@pytest.mark.parametrize("content_type", ["text/plain", "multipart/form-data", "application/xml"])
def test_unsupported_content_type_is_400(content_type: str) -> None:
    with pytest.raises(BadRequest, match="content type"):
        parse_body(b"{}", content_type)


# --- push classification ----------------------------------------------------------------------


def test_branch_push_becomes_a_job_with_the_pushes_identifiers() -> None:
    job = classify_push(push_payload(), DELIVERY, received_at=NOW)
    assert job == PushJob(
        delivery=DELIVERY,
        installation_id=7,
        repository_id=99,
        repository="octo-org/hello",
        clone_url="https://github.com/octo-org/hello.git",
        ref="refs/heads/main",
        before=BEFORE,
        sha=SHA,
    )
    assert job.to_kwargs()["sha"] == SHA


def test_new_branch_push_has_zero_before() -> None:
    job = classify_push(push_payload(before=ZERO_SHA), DELIVERY, received_at=NOW)
    assert isinstance(job, PushJob)
    assert job.before == ZERO_SHA


@pytest.mark.parametrize(
    "changes",
    [{"after": ZERO_SHA}, {"deleted": True}, {"deleted": True, "after": ZERO_SHA}],
)
def test_branch_deletion_is_ignored(changes: dict[str, Any]) -> None:
    assert isinstance(classify_push(push_payload(**changes), DELIVERY, received_at=NOW), Ignored)


def test_tag_push_is_ignored() -> None:
    outcome = classify_push(push_payload(ref="refs/tags/v1.0"), DELIVERY, received_at=NOW)
    assert isinstance(outcome, Ignored)
    assert "tag" in outcome.reason


@pytest.mark.parametrize(
    ("branch", "patterns"),
    [
        ("main", ["main"]),
        ("release/1.2", ["main", "release/*"]),
        ("feature-x", ["feature-*"]),
        ("anything", []),
    ],
)
def test_branch_matching_push_branches_is_processed(branch: str, patterns: list[str]) -> None:
    outcome = classify_push(
        push_payload(ref=f"refs/heads/{branch}"), DELIVERY, patterns, received_at=NOW
    )
    assert isinstance(outcome, PushJob)


@pytest.mark.parametrize(
    ("branch", "patterns"),
    [("dev", ["main"]), ("main2", ["main"]), ("Main", ["main"]), ("hotfix/1", ["release/*"])],
)
def test_branch_not_matching_push_branches_is_ignored(branch: str, patterns: list[str]) -> None:
    outcome = classify_push(
        push_payload(ref=f"refs/heads/{branch}"), DELIVERY, patterns, received_at=NOW
    )
    assert isinstance(outcome, Ignored)
    assert "PUSH_BRANCHES" in outcome.reason


@pytest.mark.parametrize(
    "installation",
    [None, {}, {"id": "7"}, {"id": 0}, {"id": -1}, {"id": True}, {"id": 7.0}, "7"],
)
def test_push_without_integer_installation_id_is_400(installation: Any) -> None:
    with pytest.raises(BadRequest, match=r"installation\.id"):
        classify_push(push_payload(installation=installation), DELIVERY, received_at=NOW)


@pytest.mark.parametrize(
    "after",
    [None, "", "abc", "A" * 40, "g" * 40, "a" * 41, 123, "a" * 40 + "\n", " " + "a" * 39],
)
def test_after_that_is_not_a_sha_is_400(after: Any) -> None:
    with pytest.raises(BadRequest, match="after"):
        classify_push(push_payload(after=after), DELIVERY, received_at=NOW)


@pytest.mark.parametrize(
    "ref",
    [
        None,
        "",
        "refs/heads/../../etc",
        "refs/heads/a..b",
        "refs/heads/a\nb",
        "refs/heads/a\x00b",
        "refs/heads/a b",
        "refs/heads/a\x7f",
        "refs/heads/",
        "refs/heads/x.lock",
        "refs/heads/a@{1}",
        "refs/heads/" + "x" * 2000,
        "refs/heads/main\n",
        "refs/heads/x.lock\n",
        "refs/heads/a\u2028b",
        "refs/heads/a\x85b",
    ],
)
def test_ref_that_git_would_refuse_is_400(ref: Any) -> None:
    with pytest.raises(BadRequest, match="ref"):
        classify_push(push_payload(ref=ref), DELIVERY, received_at=NOW)


@pytest.mark.parametrize(
    "repository",
    [
        {"full_name": "o/r", "clone_url": "https://github.com/o/r.git"},
        {"id": "99", "full_name": "o/r", "clone_url": "https://github.com/o/r.git"},
        {"id": 99, "full_name": "no-slash", "clone_url": "https://github.com/o/r.git"},
        {"id": 99, "full_name": "o/r", "clone_url": "git@github.com:o/r.git"},
        {"id": 99, "full_name": "o/r"},
    ],
)
def test_push_with_malformed_repository_is_400(repository: dict[str, Any]) -> None:
    with pytest.raises(BadRequest, match="repository"):
        classify_push(push_payload(repository=repository), DELIVERY, received_at=NOW)


def test_before_that_is_not_exactly_a_sha_reads_as_a_new_branch() -> None:
    job = classify_push(push_payload(before=BEFORE + "\n"), DELIVERY, received_at=NOW)
    assert isinstance(job, PushJob)
    assert job.before == ZERO_SHA


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("full_name", "octo-org/hello\n2026-01-01 INFO forged line"),
        ("full_name", "octo-org/hel\rlo"),
        ("full_name", "octo-org/\x1b[31mred"),
        ("full_name", "octo-org/hello\x7f"),
        ("full_name", "octo-org/hello\x85"),  # NEL
        ("full_name", "octo-org/hello\u2028forged"),
        ("full_name", "octo-org/hello\u2029"),
        ("full_name", "octo-org/\x00"),
        ("clone_url", "https://github.com/octo-org/hello.git\n"),
        ("clone_url", "https://github.com/octo-org/he\tllo.git"),
        ("clone_url", "https://github.com/octo-org/hello.git\u2028"),
    ],
)
def test_control_characters_in_a_repository_name_or_url_are_400(field: str, value: str) -> None:
    repository = dict(push_payload()["repository"], **{field: value})
    with pytest.raises(BadRequest) as info:
        classify_push(push_payload(repository=repository), DELIVERY, received_at=NOW)
    message = str(info.value)
    assert f"repository.{field}" in message
    assert "control character" in message
    assert value not in message
    assert "\n" not in message


def test_control_characters_in_an_installation_action_are_400() -> None:
    headers, body = signed("installation", {"action": "created\nforged", "installation": {"id": 7}})
    with pytest.raises(BadRequest, match="control character"):
        read_delivery(headers, body, secrets=[SECRET])


@pytest.mark.parametrize(
    ("pushed_at", "expected"),
    [
        (1_699_999_000, 1_699_999_000),
        (int(NOW) + MAX_CLOCK_SKEW, int(NOW) + MAX_CLOCK_SKEW),  # GitHub's clock a bit ahead
        (int(NOW) + MAX_CLOCK_SKEW + 1, int(NOW) + MAX_CLOCK_SKEW),
        (2**62, int(NOW) + MAX_CLOCK_SKEW),  # would keep the branch's pushes superseded for ages
        (2**64, int(NOW) + MAX_CLOCK_SKEW),
        (True, 0),  # bool is an int in Python
        (False, 0),
        (0, 0),
        (-5, 0),
        (1.7e9, 0),
        ("1700000000", 0),
        (None, 0),
        ([1], 0),
        ({"a": 1}, 0),
    ],
)
def test_pushed_at_is_a_positive_integer_at_most_a_little_after_receipt(
    pushed_at: Any, expected: int
) -> None:
    repository = dict(push_payload()["repository"], pushed_at=pushed_at)
    job = classify_push(push_payload(repository=repository), DELIVERY, received_at=NOW)
    assert isinstance(job, PushJob)
    assert job.pushed_at == expected
    assert type(job.pushed_at) is int


def test_read_delivery_caps_pushed_at_by_its_receiving_time() -> None:
    repository = dict(push_payload()["repository"], pushed_at=2**62)
    headers, body = signed("push", push_payload(repository=repository))
    delivery = read_delivery(headers, body, secrets=[SECRET], received_at=NOW)
    assert isinstance(delivery.outcome, PushJob)
    assert delivery.outcome.pushed_at == int(NOW) + MAX_CLOCK_SKEW


# --- read_delivery ----------------------------------------------------------------------------


def test_signed_push_is_read_into_a_job() -> None:
    headers, body = signed("push", push_payload())
    delivery = read_delivery(headers, body, secrets=[SECRET])
    assert delivery.event == "push"
    assert delivery.delivery == DELIVERY
    assert isinstance(delivery.outcome, PushJob)
    assert delivery.outcome.sha == SHA
    assert delivery.payload == push_payload()
    assert delivery.payload_json == body


def test_push_branches_apply_to_read_delivery() -> None:
    headers, body = signed("push", push_payload(ref="refs/heads/dev"))
    delivery = read_delivery(headers, body, secrets=[SECRET], push_branches=["main"])
    assert isinstance(delivery.outcome, Ignored)


def test_unsigned_garbage_is_401_before_any_parsing() -> None:
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": DELIVERY}
    with pytest.raises(BadSignature) as info:
        read_delivery(headers, b"\x00not json[[[", secrets=[SECRET])
    assert info.value.status == 401


def test_wrongly_signed_delivery_is_401_even_without_event_headers() -> None:
    body = b"{}"
    headers = {"X-Hub-Signature-256": signature_for(body, b"wrong")}
    with pytest.raises(BadSignature):
        read_delivery(headers, body, secrets=[SECRET])


def test_delivery_signed_with_a_rotated_secret_is_accepted() -> None:
    headers, body = signed("ping", {"zen": "hi"}, secret=b"new")
    assert read_delivery(headers, body, secrets=[SECRET, b"new"]).outcome == Ignored("ping")


@pytest.mark.parametrize("header", ["X-GitHub-Event", "X-GitHub-Delivery"])
def test_missing_event_or_delivery_header_is_400(header: str) -> None:
    headers, body = signed("push", push_payload())
    del headers[header]
    with pytest.raises(BadRequest, match=header):
        read_delivery(headers, body, secrets=[SECRET])


@pytest.mark.parametrize(
    "delivery", ["a b", "x" * 101, "../../etc", "a\x00b", "a\nb", "a\u2028b", "\u0660"]
)
def test_malformed_delivery_id_is_400(delivery: str) -> None:
    headers, body = signed("push", push_payload())
    headers["X-GitHub-Delivery"] = delivery
    with pytest.raises(BadRequest, match="X-GitHub-Delivery"):
        read_delivery(headers, body, secrets=[SECRET])


@pytest.mark.parametrize("event", ["pu sh", "pu\x85sh", "pu\u2028sh", "x" * 101, "pu/sh"])
def test_malformed_event_name_is_400(event: str) -> None:
    headers, body = signed("push", push_payload())
    headers["X-GitHub-Event"] = event
    with pytest.raises(BadRequest, match="X-GitHub-Event"):
        read_delivery(headers, body, secrets=[SECRET])


def test_ping_is_ignored() -> None:
    headers, body = signed("ping", {"zen": "Design for failure.", "hook_id": 1})
    assert read_delivery(headers, body, secrets=[SECRET]).outcome == Ignored("ping")


def test_unknown_event_is_ignored() -> None:
    headers, body = signed("issues", {"action": "opened"})
    outcome = read_delivery(headers, body, secrets=[SECRET]).outcome
    assert isinstance(outcome, Ignored)
    assert "issues" in outcome.reason


@pytest.mark.parametrize(
    ("action", "drop"),
    [("created", False), ("deleted", True), ("suspend", True), ("unsuspend", False)],
)
def test_installation_event_is_recorded_and_drops_tokens_when_removed(
    action: str, drop: bool
) -> None:
    payload = {
        "action": action,
        "installation": {"id": 7, "account": {"login": "octo-org"}},
        "repositories": [{"full_name": "octo-org/a"}, {"full_name": "octo-org/b"}],
    }
    headers, body = signed("installation", payload)
    outcome = read_delivery(headers, body, secrets=[SECRET]).outcome
    assert outcome == InstallationChange(
        installation_id=7,
        action=action,
        account="octo-org",
        repositories_added=("octo-org/a", "octo-org/b"),
        drop_tokens=drop,
    )


def test_installation_repositories_event_lists_added_and_removed() -> None:
    payload = {
        "action": "removed",
        "installation": {"id": 7, "account": {"login": "octo-org"}},
        "repositories_added": [],
        "repositories_removed": [{"full_name": "octo-org/gone"}],
    }
    headers, body = signed("installation_repositories", payload)
    outcome = read_delivery(headers, body, secrets=[SECRET]).outcome
    assert isinstance(outcome, InstallationChange)
    assert outcome.repositories_removed == ("octo-org/gone",)
    assert outcome.repositories_added == ()
    assert outcome.drop_tokens is False


def test_installation_event_without_action_is_400() -> None:
    headers, body = signed("installation", {"installation": {"id": 7}})
    with pytest.raises(BadRequest, match="action"):
        read_delivery(headers, body, secrets=[SECRET])


def test_delivery_for_another_app_is_403() -> None:
    headers, body = signed(
        "push", push_payload(), **{"X-GitHub-Hook-Installation-Target-ID": "999"}
    )
    with pytest.raises(WrongApp) as info:
        read_delivery(headers, body, secrets=[SECRET], app_id="4242")
    assert info.value.status == 403


def test_delivery_for_this_app_is_accepted() -> None:
    headers, body = signed(
        "push", push_payload(), **{"X-GitHub-Hook-Installation-Target-ID": "4242"}
    )
    delivery = read_delivery(headers, body, secrets=[SECRET], app_id="4242")
    assert isinstance(delivery.outcome, PushJob)


def test_wrong_app_check_comes_after_the_signature() -> None:
    headers, body = signed(
        "push", push_payload(), **{"X-GitHub-Hook-Installation-Target-ID": "999"}
    )
    headers["X-Hub-Signature-256"] = signature_for(body, b"wrong")
    with pytest.raises(BadSignature):
        read_delivery(headers, body, secrets=[SECRET], app_id="4242")


@pytest.mark.parametrize(
    ("app_id", "target", "expected"),
    [
        ("4242", "999", "4242"),  # the configured App, whatever the header says
        (None, "4242", "4242"),
        (None, " 4242 ", "4242"),
        (None, None, "-"),
        (None, "", "-"),
        (None, "42:evil*", "-"),  # it ends up in Redis keys: digits only
        (None, "1" * 21, "-"),
    ],
)
def test_the_ledger_is_keyed_by_the_app_decided_here(app_id, target, expected) -> None:
    assert ledger_app(app_id, target) == expected


# --- re-runs asked for on GitHub --------------------------------------------------------------


def check_run_payload(action: str = "rerequested", app_id: Any = 4242, **suite: Any) -> dict:
    return {
        "action": action,
        "check_run": {
            "id": 5,
            "head_sha": SHA,
            "app": {"id": app_id},
            "check_suite": {"id": 3, "head_branch": "main", "head_sha": SHA, **suite},
        },
        "installation": {"id": 7},
        "repository": push_payload()["repository"],
    }


def check_suite_payload(action: str = "rerequested", app_id: Any = 4242, **suite: Any) -> dict:
    return {
        "action": action,
        "check_suite": {
            "id": 3,
            "head_branch": "main",
            "head_sha": SHA,
            "app": {"id": app_id},
            **suite,
        },
        "installation": {"id": 7},
        "repository": push_payload()["repository"],
    }


@pytest.mark.parametrize(
    ("event", "payload"),
    [("check_run", check_run_payload()), ("check_suite", check_suite_payload())],
)
def test_a_re_run_of_this_apps_check_is_a_job_for_that_commit_and_branch(event, payload) -> None:
    headers, body = signed(event, payload)
    delivery = read_delivery(headers, body, secrets=[SECRET], app_id="4242")
    job = delivery.outcome
    assert isinstance(job, PushJob)
    assert (job.sha, job.ref, job.event, job.rerun) == (SHA, "refs/heads/main", event, True)
    assert (job.repository_id, job.repository, job.installation_id) == (99, "octo-org/hello", 7)
    assert job.delivery == DELIVERY


@pytest.mark.parametrize(
    ("event", "payload", "reason"),
    [
        ("check_run", check_run_payload(app_id=1), "another App"),
        ("check_suite", check_suite_payload(app_id="1"), "another App"),
        ("check_suite", check_suite_payload(action="requested"), "not a re-run"),
        ("check_run", check_run_payload(action="completed"), "not a re-run"),
        ("check_run", check_run_payload(head_branch=None), "names no branch"),
        ("check_suite", check_suite_payload(head_branch="dev"), "PUSH_BRANCHES"),
    ],
)
def test_what_is_not_a_re_run_of_this_app_is_ignored(event, payload, reason) -> None:
    headers, body = signed(event, payload)
    delivery = read_delivery(headers, body, secrets=[SECRET], app_id="4242", push_branches=["main"])
    assert isinstance(delivery.outcome, Ignored)
    assert reason in delivery.outcome.reason


def test_a_re_run_is_judged_by_the_hooks_app_when_no_app_id_is_set() -> None:
    target = {"X-GitHub-Hook-Installation-Target-ID": "4242"}
    headers, body = signed("check_run", check_run_payload(), **target)
    assert isinstance(read_delivery(headers, body, secrets=[SECRET]).outcome, PushJob)
    headers, body = signed("check_run", check_run_payload())
    outcome = read_delivery(headers, body, secrets=[SECRET]).outcome
    assert isinstance(outcome, Ignored)
    assert "GITHUB_APP_ID" in outcome.reason


@pytest.mark.parametrize(
    "payload",
    [
        check_run_payload(head_branch="bad..branch"),
        check_run_payload(head_branch="line\nbreak"),
        {**check_run_payload(), "check_run": "x"},
        {**check_suite_payload(), "repository": {"id": 1}},
        {**check_suite_payload(), "installation": {}},
    ],
)
def test_a_malformed_re_run_is_400(payload) -> None:
    event = "check_run" if isinstance(payload.get("check_run"), (dict, str)) else "check_suite"
    headers, body = signed(event, payload)
    with pytest.raises(BadRequest):
        read_delivery(headers, body, secrets=[SECRET], app_id="4242")


def test_a_re_run_whose_sha_is_not_a_sha_is_400() -> None:
    payload = check_suite_payload()
    payload["check_suite"]["head_sha"] = "HEAD"
    headers, body = signed("check_suite", payload)
    with pytest.raises(BadRequest, match="head_sha"):
        read_delivery(headers, body, secrets=[SECRET], app_id="4242")
