"""Show a job on GitHub: a check run on the processed commit (or a commit status), created when
processing starts and completed when it ends.

Reporting never fails the job: GitHub's errors are retried as every call is, and a report that
still cannot be made is said in the job's result. An App lacking the Checks permission falls back
to commit statuses, then to nothing, with one warning saying which permission to add. Each call
uses a token scoped to the repository with only the permission it needs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import redis
from rq.timeouts import JobTimeoutException

from ghapp.core import redis_keys
from ghapp.core.push_job import PushJob

from .check_output import (
    STATUS_STATES,
    Verdict,
    completion_bodies,
    minimal_completion,
    started_body,
    status_body,
)
from .failures import RateLimited, Transient, waits_in_place
from .github_api import GitHubAPI, GitHubRefused
from .tokens import TokenScope, TokenSource

log = logging.getLogger("ghapp.worker.reporting")
T = TypeVar("T")

MODES = ("checks", "statuses")
PERMISSION = {"checks": {"checks": "write"}, "statuses": {"statuses": "write"}}
# How long an installation's reports go by the fallback before the permission is tried again.
FALLBACK_TTL = 600
RATE_LIMIT_TRIES = 3
# Attempts at a call that is safe to repeat (completing a check run, setting a status), and
# the pause before each new one.
ATTEMPTS = 3
PAUSE = 1.0
# GitHub's answer to a token asking for a permission the App lacks (other 422s name a
# repository the installation cannot reach: no reason to fall back).
NOT_GRANTED = "permissions requested are not granted"
MISSING = {
    "checks": (
        "the App lacks the 'Checks: Read and write' permission, so no check run can be made: "
        "add it in the App's settings (Permissions & events) and accept it on the installation; "
        "until then pushes are reported as commit statuses if the App may write them"
    ),
    "statuses": (
        "the App lacks the 'Commit statuses: Read and write' permission, so no commit status "
        "can be made: add it in the App's settings (Permissions & events), or give it 'Checks: "
        "Read and write' for check runs; until then nothing is reported on GitHub"
    ),
}


class NotPermitted(Exception):
    """The App may not report this way on this installation."""


class TokenUnavailable(Exception):
    """GitHub gave no token (unreachable, rate limited, failing): the job's own token, for its
    fetch, would fail the same way, so a job that has not started is better tried later."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Reporter:
    """The reports of one job; ``mode`` is REPORT (checks, statuses or none)."""

    push: PushJob
    mode: str
    check_name: str
    connection: redis.Redis
    api: GitHubAPI
    tokens: TokenSource
    details_url: str | None = None
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    error: str | None = field(default=None, init=False)

    @property
    def key(self) -> str:
        return redis_keys.report(self.push.repository_id, self.push.delivery)

    def started(self) -> None:
        """Say on GitHub that the push is being processed (once per job, however often it runs,
        and never after the job's report was completed)."""
        state = self._state()
        if state.get("completed") or state.get("check_run_id"):
            return
        # GitHub giving no token now gives none to the fetch either: raised, the job is tried
        # later (a long rate limit reschedules it), with nothing processed yet.
        self._each_mode(self._start, raise_token_failures=True)

    def finished(self, result: Verdict) -> dict[str, Any]:
        """Complete the job's report with ``result``; what was reported, for the job's result.
        Never raises (but RQ's job timeout): the processing's result stands whatever GitHub
        does."""
        try:
            state = self._state()
            if state.get("completed"):
                return {"mode": state.get("mode", "none"), "note": "already reported", **state}
            if state.get("check_run_id"):  # the one this job created: completed, whatever since
                done = self._each_mode(lambda m: self._finish(m, result), modes=["checks"])
            else:
                done = self._each_mode(lambda mode: self._finish(mode, result))
        except JobTimeoutException:
            raise
        except Exception as exc:
            self.error = f"could not report on GitHub: {type(exc).__name__}: {exc}"
            log.warning("%s; the processing's result stands", self.error)
            done = None
        if done is not None:
            return done
        return {
            "mode": "none",
            "error": self.error or "the App may not report on this installation",
        }

    # Internals -----------------------------------------------------------------------------

    def _state(self) -> dict[str, str]:
        raw: dict[bytes, bytes] = self.connection.hgetall(self.key)  # type: ignore[assignment]
        return {k.decode(): v.decode() for k, v in raw.items()}

    def _save(self, **fields: str) -> None:
        with self.connection.pipeline() as pipe:
            pipe.hset(self.key, mapping=dict(fields))  # type: ignore[arg-type]
            pipe.expire(self.key, redis_keys.REPORT_TTL)
            pipe.execute()

    def _modes(self) -> list[str]:
        if self.mode not in MODES:
            return []
        modes = list(MODES[MODES.index(self.mode) :])
        fallback = self.connection.get(redis_keys.report_fallback(self.push.installation_id))
        if fallback:
            name = fallback.decode() if isinstance(fallback, bytes) else str(fallback)
            modes = modes[modes.index(name) :] if name in modes else []
        return modes

    def _each_mode(
        self,
        attempt: Callable[[str], T],
        *,
        raise_token_failures: bool = False,
        modes: list[str] | None = None,
    ) -> T | None:
        """``attempt(mode)`` in the first mode the App may use; None if none worked."""
        for mode in self._modes() if modes is None else modes:
            try:
                return attempt(mode)
            except NotPermitted:
                self._fall_back(mode)
            except TokenUnavailable as exc:
                if raise_token_failures:
                    raise exc.cause from None
                self.error = f"could not report on GitHub: {exc}"
                log.warning("%s; the processing's result stands", self.error)
                return None
            except (Transient, GitHubRefused) as exc:
                self.error = f"could not report on GitHub: {exc}"
                log.warning("%s; the processing's result stands", self.error)
                return None
        return None

    def _fall_back(self, mode: str) -> None:
        following = MODES[MODES.index(mode) + 1 :]
        after = following[0] if following else "none"
        key = redis_keys.report_fallback(self.push.installation_id)
        before = self.connection.set(key, after, ex=FALLBACK_TTL, get=True)
        if before is None or (before.decode() if isinstance(before, bytes) else before) != after:
            log.warning(MISSING[mode])  # once per change, not once per job
        self.error = MISSING[mode]

    def _call(self, mode: str, call: Callable[[str], T]) -> T:
        """``call(token)`` with a token that may only ``mode``: NotPermitted if the App may not;
        a short rate limit waited out; a refused token minted afresh once."""
        scope = TokenScope(repository_ids=(self.push.repository_id,), permissions=PERMISSION[mode])
        installation = self.push.installation_id
        refreshed = False
        tries = 0
        while True:
            try:
                token = self.tokens.token(installation, scope)
            except GitHubRefused as exc:
                if exc.status == 422 and NOT_GRANTED in str(exc):
                    raise NotPermitted(str(exc)) from None
                raise
            except Transient as exc:
                raise TokenUnavailable(exc) from None
            try:
                return call(token.value)
            except GitHubRefused as exc:
                if exc.status == 403 and "not accessible by integration" in str(exc):
                    raise NotPermitted(str(exc)) from None
                if exc.status == 401 and not refreshed:
                    refreshed = True
                    self.tokens.forget(installation, scope)
                    continue
                raise
            except RateLimited as exc:
                tries += 1
                if not waits_in_place(exc) or tries >= RATE_LIMIT_TRIES:
                    raise
                self.sleep(exc.wait)

    def _repeated(self, mode: str, call: Callable[[str], T]) -> T:
        """``_call`` for a call that is safe to repeat: a failure GitHub may get over (a 5xx, a
        lost answer) is tried again, ATTEMPTS times in all."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return self._call(mode, call)
            except RateLimited:
                raise  # a short one was waited out already
            except Transient:
                if attempt == ATTEMPTS:
                    raise
                self.sleep(PAUSE * attempt)
        raise AssertionError("unreachable")

    def _start(self, mode: str) -> None:
        push = self.push
        if mode == "statuses":
            body = status_body(
                "pending",
                context=self.check_name,
                description_text="processing",
                target_url=self.details_url,
            )
            self._repeated(
                mode, lambda t: self.api.create_status(t, push.repository, push.sha, body)
            )
            self._save(mode=mode)
            return
        created = self._create(mode, self._started_body())
        self._save(mode=mode, check_run_id=str(created["id"]), url=str(created.get("html_url")))

    def _create(self, mode: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create the job's check run once: when GitHub's answer was lost (a 5xx, a timeout),
        look for it by its external_id before creating it again."""
        push = self.push
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return self._call(
                    mode, lambda t: self.api.create_check_run(t, push.repository, body)
                )
            except Transient:
                if attempt == ATTEMPTS:
                    raise
                self.sleep(PAUSE * attempt)
                found = self._repeated(
                    mode,
                    lambda t: self.api.find_check_run(
                        t, push.repository, push.sha, self.check_name, push.delivery
                    ),
                )
                if found is not None:
                    return found
        raise AssertionError("unreachable")

    def _started_body(self) -> dict[str, Any]:
        return started_body(
            name=self.check_name,
            sha=self.push.sha,
            external_id=self.push.delivery,
            started_at=iso(self.clock()),
            details_url=self.details_url,
        )

    def _finish(self, mode: str, result: Verdict) -> dict[str, Any]:
        push = self.push
        if mode == "statuses":
            state = STATUS_STATES.get(result.conclusion)
            if state is None:  # skipped: never processed, so no status at all
                self._save(mode=mode, completed="1")
                return {"mode": mode, "state": None}
            body = status_body(
                state,
                context=self.check_name,
                description_text=result.title,
                target_url=self.details_url,
            )
            self._repeated(
                mode, lambda t: self.api.create_status(t, push.repository, push.sha, body)
            )
            self._save(mode=mode, completed="1", state=state)
            return {"mode": mode, "state": state}
        completed_at = iso(self.clock())
        *annotation_bodies, completion = completion_bodies(result, completed_at=completed_at)
        saved = self._state()
        check_run_id, url = saved.get("check_run_id"), saved.get("url", "")
        if not check_run_id:
            if annotation_bodies:
                created = self._create(mode, self._started_body())
            else:  # completed at once (a superseded push): never seen in progress
                body = {**self._started_body(), **completion}
                created = self._create(mode, body)
                completion = {}
            check_run_id, url = str(created["id"]), str(created.get("html_url"))
            self._save(mode=mode, check_run_id=check_run_id, url=url)
        notes: list[str] = []
        for body in annotation_bodies:  # appended by GitHub: each sent once
            try:
                self._call(mode, lambda t, b=body: self._update(t, check_run_id, b))  # type: ignore[misc]
            except (Transient, GitHubRefused) as exc:
                notes.append(f"annotations not all sent: {exc}")
                break
        if completion:
            try:
                self._repeated(mode, lambda t: self._update(t, check_run_id, completion))
            except GitHubRefused as exc:
                if exc.status != 422:
                    raise
                # GitHub refused the report itself: complete the check run all the same.
                smaller = minimal_completion(result, completed_at=completed_at, refusal=str(exc))
                self._repeated(mode, lambda t: self._update(t, check_run_id, smaller))
                notes.append(f"GitHub refused the full report: {exc}")
        self._save(mode=mode, completed="1", conclusion=result.conclusion)
        done: dict[str, Any] = {
            "mode": mode,
            "check_run_id": int(check_run_id),
            "url": url,
            "conclusion": result.conclusion,
        }
        if notes:
            done["error"] = "; ".join(notes)
        return done

    def _update(self, token: str, check_run_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.api.update_check_run(token, self.push.repository, int(check_run_id), body)
