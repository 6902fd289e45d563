"""When a failed fetch is tried again: a token GitHub does not know yet, a stale cached one, a
bad minute of the network, and the job's own deadline. No git and no waiting: ``fetch_commit``
is replaced by a script of outcomes, and the clocks and ``sleep`` are fakes that move together."""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path

import pytest

from worker import fetch_policy
from worker.checkout import CheckoutFailed, CheckoutRefused, CheckoutTimedOut, Limits
from worker.failures import Permanent, Transient
from worker.fetch_policy import (
    BACKOFF_BASE,
    BACKOFF_MAX,
    FRESH_TOKEN_GRACE,
    FRESH_TOKEN_PAUSE,
    TRANSIENT_TRIES,
    backoff,
    fetch_with_retries,
)
from worker.tokens import Token

CLONE_URL = "https://github.com/octo-org/hello.git"
GITHUB_URL = "https://github.com"
SHA = "a" * 40
LIMITS = Limits(max_bytes=100 * 2**20, max_files=10_000, timeout=300.0)


class FakeTime:
    """The wall clock (what ``Token.minted_at`` is measured in), ``time.monotonic`` (what the
    job's deadline is measured in) and ``sleep``, which moves both."""

    def __init__(self) -> None:
        self.wall = 1_700_000_000.0
        self.mono = 5_000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)


class Tokens:
    """``get_token``: the first call answers ``first``; each ``fresh=True`` mints a new one."""

    def __init__(self, now: FakeTime, *, first_minted_at: float | None) -> None:
        self.now = now
        self.first_minted_at = first_minted_at
        self.calls: list[bool] = []

    def __call__(self, *, fresh: bool = False) -> Token:
        self.calls.append(fresh)
        if fresh:
            minted = sum(self.calls)
            return Token(f"ghs_minted{minted}", self.now.wall + 3600, minted_at=self.now.wall)
        return Token("ghs_cached", self.now.wall + 3600, minted_at=self.first_minted_at)


@dataclasses.dataclass
class Attempt:
    token: str
    clone_url: str
    sha: str
    github_url: str
    limits: Limits
    path_existed: bool


class Git:
    """``fetch_commit`` playing a script: each attempt raises the next exception (None:
    succeeds), after taking ``duration`` seconds of the fake time."""

    def __init__(
        self, now: FakeTime, script: list[Exception | None], *, duration: float = 0.0
    ) -> None:
        self.now = now
        self.script = list(script)
        self.duration = duration
        self.attempts: list[Attempt] = []

    def __call__(
        self,
        path: Path,
        clone_url: str,
        sha: str,
        *,
        token: str,
        github_url: str,
        limits: Limits,
    ) -> None:
        self.attempts.append(Attempt(token, clone_url, sha, github_url, limits, path.exists()))
        path.mkdir(parents=True)
        (path / "half-fetched").write_text("left by this attempt")
        self.now.advance(self.duration)
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome

    @property
    def tokens(self) -> list[str]:
        return [attempt.token for attempt in self.attempts]


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    # The deadline is read from time.monotonic() inside the module: give the module a time of
    # its own (the clock and sleep defaults were bound at import and are passed anyway).
    monkeypatch.setattr(fetch_policy, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    return fake


@pytest.fixture
def widest_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Full jitter at its upper bound, so the pauses are known."""
    monkeypatch.setattr(fetch_policy, "random", types.SimpleNamespace(uniform=lambda a, b: b))


def run(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    now: FakeTime,
    git: Git,
    tokens: Tokens,
    *,
    deadline_in: float = 600.0,
    limits: Limits = LIMITS,
) -> None:
    monkeypatch.setattr(fetch_policy, "fetch_commit", git)
    fetch_with_retries(
        tmp_path / "checkout",
        clone_url=CLONE_URL,
        sha=SHA,
        github_url=GITHUB_URL,
        get_token=tokens,
        limits=limits,
        deadline=now.mono + deadline_in,
        clock=now.clock,
        sleep=now.sleep,
    )


def refused(status: int = 401) -> CheckoutFailed:
    return CheckoutFailed(f"git fetch refused the installation token (HTTP {status})", status)


def server_error(status: int = 502) -> CheckoutFailed:
    return CheckoutFailed(f"git fetch failed (HTTP {status})", status)


# --- the first try ------------------------------------------------------------------------


def test_a_fetch_that_works_is_tried_once_with_the_cached_token(monkeypatch, tmp_path, now):
    git = Git(now, [None])
    tokens = Tokens(now, first_minted_at=None)
    run(monkeypatch, tmp_path, now, git, tokens)
    assert tokens.calls == [False]
    assert git.tokens == ["ghs_cached"]
    (attempt,) = git.attempts
    assert (attempt.clone_url, attempt.sha, attempt.github_url) == (CLONE_URL, SHA, GITHUB_URL)
    assert attempt.limits == LIMITS
    assert now.sleeps == []


def test_every_attempt_starts_from_an_empty_directory(monkeypatch, tmp_path, now):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "stale").write_text("from an earlier job")
    git = Git(now, [server_error(), refused(), None])
    run(monkeypatch, tmp_path, now, git, Tokens(now, first_minted_at=None))
    assert [attempt.path_existed for attempt in git.attempts] == [False, False, False]


# --- a token GitHub refuses ---------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_a_token_refused_just_after_minting_is_tried_again_after_a_pause(
    monkeypatch, tmp_path, now, status
):
    git = Git(now, [refused(status), None])
    tokens = Tokens(now, first_minted_at=now.wall - 1.0)  # minted by this job a second ago
    run(monkeypatch, tmp_path, now, git, tokens)
    assert tokens.calls == [False]  # nothing minted: GitHub just had not replicated it yet
    assert git.tokens == ["ghs_cached", "ghs_cached"]
    assert now.sleeps == [FRESH_TOKEN_PAUSE]


@pytest.mark.parametrize(
    ("age", "pauses"),
    [
        (0.0, True),
        (FRESH_TOKEN_GRACE - 0.1, True),
        (FRESH_TOKEN_GRACE, False),
        (3600.0, False),
        (None, False),  # came from the cache: its age is unknown
    ],
)
def test_the_grace_is_measured_on_the_injected_clock(monkeypatch, tmp_path, now, age, pauses):
    now.mono = 0.0  # far from the wall clock: minted_at must be compared with clock()
    git = Git(now, [refused(), None])
    tokens = Tokens(now, first_minted_at=None if age is None else now.wall - age)
    run(monkeypatch, tmp_path, now, git, tokens)
    if pauses:
        assert (tokens.calls, now.sleeps) == ([False], [FRESH_TOKEN_PAUSE])
    else:
        assert (tokens.calls, now.sleeps) == ([False, True], [])


@pytest.mark.parametrize("status", [401, 403])
def test_a_stale_token_is_dropped_and_a_fresh_one_minted_once(monkeypatch, tmp_path, now, status):
    git = Git(now, [refused(status), None])
    tokens = Tokens(now, first_minted_at=None)
    run(monkeypatch, tmp_path, now, git, tokens)
    assert tokens.calls == [False, True]
    assert git.tokens == ["ghs_cached", "ghs_minted1"]
    assert now.sleeps == []


def test_a_fresh_token_refused_past_its_grace_is_permanent_and_says_what_to_fix(
    monkeypatch, tmp_path, now
):
    git = Git(now, [refused(403)] * 1000)
    tokens = Tokens(now, first_minted_at=None)
    with pytest.raises(Permanent) as failure:
        run(monkeypatch, tmp_path, now, git, tokens)
    assert not isinstance(failure.value, Transient)  # RQ must not try the job again
    assert tokens.calls == [False, True]  # minted once, not once per refusal
    assert git.tokens[0] == "ghs_cached"
    assert set(git.tokens[1:]) == {"ghs_minted1"}
    # The minted token was given its grace (GitHub may not know it yet), and no more.
    assert set(now.sleeps) == {FRESH_TOKEN_PAUSE}
    assert FRESH_TOKEN_GRACE <= sum(now.sleeps) <= FRESH_TOKEN_GRACE + FRESH_TOKEN_PAUSE
    message = str(failure.value)
    assert "Contents: read" in message
    assert "installed on this repository" in message
    assert "refused the installation token" in message  # git's reason is kept
    assert "ghs_" not in message
    assert failure.value.__cause__ is None
    assert failure.value.__suppress_context__


def test_a_token_refused_just_after_minting_by_this_job_is_not_retried_forever(
    monkeypatch, tmp_path, now
):
    git = Git(now, [refused()] * 1000)
    tokens = Tokens(now, first_minted_at=now.wall)
    with pytest.raises(Permanent, match=r"Contents: read"):
        run(monkeypatch, tmp_path, now, git, tokens)
    assert tokens.calls == [False, True]
    # Two graces at most: the first token's, then the freshly minted one's.
    assert sum(now.sleeps) <= 2 * (FRESH_TOKEN_GRACE + FRESH_TOKEN_PAUSE)


# --- a bad minute: 5xx and network failures -------------------------------------------------


@pytest.mark.usefixtures("widest_backoff")
@pytest.mark.parametrize("status", [0, 500, 502, 503, 504])
def test_transient_failures_are_retried_with_growing_pauses_then_raised(
    monkeypatch, tmp_path, now, status
):
    failures = [server_error(status) for _ in range(TRANSIENT_TRIES)]
    git = Git(now, [*failures, None])
    tokens = Tokens(now, first_minted_at=None)
    with pytest.raises(CheckoutFailed) as failure:
        run(monkeypatch, tmp_path, now, git, tokens)
    assert failure.value is failures[-1]  # git's own message, for the job's log
    assert isinstance(failure.value, Transient)  # RQ tries the job again later
    assert len(git.attempts) == TRANSIENT_TRIES
    assert now.sleeps == [BACKOFF_BASE * 2**n for n in range(1, TRANSIENT_TRIES)]
    assert tokens.calls == [False]  # a network failure is no reason to mint


@pytest.mark.usefixtures("widest_backoff")
def test_a_fetch_that_works_after_a_bad_minute_succeeds(monkeypatch, tmp_path, now):
    git = Git(now, [server_error(), server_error(503), None])
    run(monkeypatch, tmp_path, now, git, Tokens(now, first_minted_at=None))
    assert len(git.attempts) == 3
    assert now.sleeps == [BACKOFF_BASE * 2, BACKOFF_BASE * 4]


@pytest.mark.parametrize(
    "exc",
    [
        CheckoutRefused("the commit is not in the repository"),  # 404, too large, wrong origin
        ValueError("a bug"),
    ],
)
def test_failures_retrying_cannot_fix_are_raised_at_once(monkeypatch, tmp_path, now, exc):
    git = Git(now, [exc, None])
    tokens = Tokens(now, first_minted_at=None)
    with pytest.raises(type(exc)) as failure:
        run(monkeypatch, tmp_path, now, git, tokens)
    assert failure.value is exc
    assert len(git.attempts) == 1
    assert (tokens.calls, now.sleeps) == ([False], [])


# --- the job's deadline (JOB_TIMEOUT) and each attempt's (CHECKOUT_TIMEOUT) ----------------


def test_no_attempt_starts_when_the_job_has_less_than_a_second_left(monkeypatch, tmp_path, now):
    git = Git(now, [None])
    with pytest.raises(Transient, match=r"JOB_TIMEOUT ran out before the checkout"):
        run(monkeypatch, tmp_path, now, git, Tokens(now, first_minted_at=None), deadline_in=0.5)
    assert git.attempts == []


def test_the_deadline_running_out_between_attempts_is_transient(monkeypatch, tmp_path, now):
    git = Git(now, [server_error()] * TRANSIENT_TRIES, duration=20.0)
    with pytest.raises(Transient, match=r"JOB_TIMEOUT ran out before") as failure:
        run(monkeypatch, tmp_path, now, git, Tokens(now, first_minted_at=None), deadline_in=30.0)
    assert not isinstance(failure.value, CheckoutFailed)
    assert len(git.attempts) == 2
    assert git.attempts[1].limits.timeout <= 10.0


def test_an_attempt_gets_no_more_than_the_time_the_job_has_left(monkeypatch, tmp_path, now):
    git = Git(now, [None])
    run(monkeypatch, tmp_path, now, git, Tokens(now, first_minted_at=None), deadline_in=42.0)
    (attempt,) = git.attempts
    assert attempt.limits == dataclasses.replace(LIMITS, timeout=42.0)


def test_an_attempt_cut_short_by_the_jobs_deadline_is_transient(monkeypatch, tmp_path, now):
    timed_out = CheckoutTimedOut("git fetch took longer than 42 s")
    git = Git(now, [timed_out])
    with pytest.raises(Transient, match=r"JOB_TIMEOUT ran out during the checkout") as failure:
        run(monkeypatch, tmp_path, now, git, Tokens(now, first_minted_at=None), deadline_in=42.0)
    assert not isinstance(failure.value, Permanent)  # another try may have more time
    assert failure.value.__cause__ is None
    assert len(git.attempts) == 1


@pytest.mark.parametrize("deadline_in", [LIMITS.timeout, LIMITS.timeout + 1, 3600.0])
def test_an_attempt_longer_than_checkout_timeout_is_permanent(
    monkeypatch, tmp_path, now, deadline_in
):
    timed_out = CheckoutTimedOut("git fetch took longer than CHECKOUT_TIMEOUT")
    git = Git(now, [timed_out, None])
    with pytest.raises(CheckoutTimedOut) as failure:
        run(
            monkeypatch,
            tmp_path,
            now,
            git,
            Tokens(now, first_minted_at=None),
            deadline_in=deadline_in,
        )
    assert failure.value is timed_out  # its message names the setting to raise
    assert isinstance(failure.value, Permanent)
    assert len(git.attempts) == 1


# --- backoff -------------------------------------------------------------------------------


@pytest.fixture
def uniform_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, float]]:
    calls: list[tuple[float, float]] = []

    def uniform(a: float, b: float) -> float:
        calls.append((a, b))
        return (a + b) / 2

    monkeypatch.setattr(fetch_policy, "random", types.SimpleNamespace(uniform=uniform))
    return calls


def test_backoff_doubles_from_the_base_up_to_the_cap(uniform_calls):
    for attempt in range(1, 12):
        backoff(attempt)
    assert uniform_calls == [(0, min(BACKOFF_MAX, BACKOFF_BASE * 2**n)) for n in range(1, 12)]
    assert uniform_calls[0] == (0, 1.0)
    assert uniform_calls[-1] == (0, BACKOFF_MAX)


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 10, 100])
def test_backoff_has_full_jitter_within_its_bounds(attempt):
    pauses = [backoff(attempt) for _ in range(200)]
    assert all(0 <= pause <= min(BACKOFF_MAX, BACKOFF_BASE * 2**attempt) for pause in pauses)
    assert len(set(pauses)) > 1  # jittered: workers that failed together do not retry together
