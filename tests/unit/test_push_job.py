"""The push job's contract between the web process and the workers: its RQ arguments both ways,
jobs queued by an older or a newer version, and what its log lines name."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pickle
from types import MappingProxyType

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ghapp.core.push_job import FUNCTION, PushJob

JOB = PushJob(
    delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958",
    installation_id=7,
    repository_id=42,
    repository="octo-org/hello",
    clone_url="https://github.com/octo-org/hello.git",
    ref="refs/heads/main",
    before="0" * 40,
    sha="a" * 40,
    pushed_at=1_700_000_000,
    payload_key="ghapp:payload:4242:72d3162e-cc78-11e3-81ab-4c9367dc0958",
)
# What a job queued before pushed_at and payload_key existed carries.
OLDEST_KWARGS = {
    "delivery": JOB.delivery,
    "installation_id": 7,
    "repository_id": 42,
    "repository": "octo-org/hello",
    "clone_url": "https://github.com/octo-org/hello.git",
    "ref": "refs/heads/main",
    "before": "0" * 40,
    "sha": "a" * 40,
}


def test_the_job_arguments_are_exactly_the_contracts_fields():
    # Jobs wait in Redis across deploys: renaming or removing one of these breaks queued jobs.
    assert JOB.to_kwargs() == {
        **OLDEST_KWARGS,
        "pushed_at": 1_700_000_000,
        "payload_key": "ghapp:payload:4242:72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "event": "push",
    }


def test_a_job_queued_before_re_runs_existed_is_a_push():
    assert not PushJob.from_kwargs(OLDEST_KWARGS).rerun
    assert PushJob.from_kwargs({**OLDEST_KWARGS, "event": "check_suite"}).rerun


def test_the_job_arguments_carry_identifiers_only_never_a_secret():
    for name, value in JOB.to_kwargs().items():
        assert not any(word in name for word in ("token", "secret", "jwt", "password")), name
        assert isinstance(value, (str, int, type(None))), name


@pytest.mark.parametrize("job", [JOB, dataclasses.replace(JOB, payload_key=None, pushed_at=0)])
def test_a_job_survives_rqs_serializers(job):
    kwargs = job.to_kwargs()
    assert PushJob.from_kwargs(pickle.loads(pickle.dumps(kwargs))) == job
    assert PushJob.from_kwargs(orjson.loads(orjson.dumps(kwargs))) == job


@settings(max_examples=50, deadline=None)
@given(
    st.builds(
        PushJob,
        delivery=st.text(),
        installation_id=st.integers(min_value=1),
        repository_id=st.integers(min_value=1),
        repository=st.text(),
        clone_url=st.text(),
        ref=st.text(),
        before=st.text(),
        sha=st.text(),
        pushed_at=st.integers(min_value=0),
        payload_key=st.none() | st.text(),
        event=st.sampled_from(["push", "check_run", "check_suite"]),
    )
)
def test_to_kwargs_and_from_kwargs_round_trip(job):
    assert PushJob.from_kwargs(job.to_kwargs()) == job


def test_a_job_queued_by_an_older_version_takes_the_defaults():
    job = PushJob.from_kwargs(OLDEST_KWARGS)
    assert job.pushed_at == 0  # unknown: ordered by arrival
    assert job.payload_key is None  # processed without the payload
    assert (job.delivery, job.sha, job.ref) == (JOB.delivery, JOB.sha, JOB.ref)


def test_arguments_this_version_does_not_know_are_ignored():
    kwargs = {**JOB.to_kwargs(), "priority": "high", "pusher": {"name": "octocat"}}
    assert PushJob.from_kwargs(kwargs) == JOB


def test_from_kwargs_reads_any_mapping_and_leaves_it_alone():
    kwargs = {**OLDEST_KWARGS, "added_later": 1}
    before = dict(kwargs)
    assert PushJob.from_kwargs(MappingProxyType(kwargs)) == PushJob.from_kwargs(before)
    assert kwargs == before


@pytest.mark.parametrize("missing", ["delivery", "sha", "clone_url", "installation_id"])
def test_a_job_missing_a_required_field_fails_loudly_and_names_it(missing):
    kwargs = {name: value for name, value in OLDEST_KWARGS.items() if name != missing}
    with pytest.raises(TypeError, match=missing):
        PushJob.from_kwargs(kwargs)


def test_the_job_cannot_be_changed_once_made():
    with pytest.raises(dataclasses.FrozenInstanceError):
        JOB.sha = "b" * 40  # type: ignore[misc]


def test_identity_names_the_delivery_and_the_commit_and_nothing_more():
    assert JOB.identity == {
        "delivery": JOB.delivery,
        "repository": "octo-org/hello",
        "ref": "refs/heads/main",
        "sha": "a" * 40,
    }
    assert all(isinstance(value, str) for value in JOB.identity.values())


def test_identity_is_a_new_dict_each_time():
    JOB.identity["sha"] = "changed"
    assert JOB.identity["sha"] == "a" * 40


def test_function_names_the_workers_entry_point_and_it_takes_any_job_arguments():
    module, _, name = FUNCTION.rpartition(".")
    entry = getattr(importlib.import_module(module), name)
    parameters = inspect.signature(entry).parameters.values()
    # Keyword arguments only, and all of them: a job from a newer version must still reach
    # from_kwargs rather than fail in RQ's call.
    assert [p.kind for p in parameters] == [inspect.Parameter.VAR_KEYWORD]
