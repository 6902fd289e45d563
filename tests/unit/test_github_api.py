"""What GitHub's answers mean to the worker: a rate limit and how long to wait, a JWT refused for
its times and by how much the clocks differ, a refusal with the setting to check. Built from the
headers and bodies GitHub sends (lower-case header names, as over HTTP/2); no network."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from email.utils import formatdate
from typing import Any

import orjson
import pytest
import requests
from requests.structures import CaseInsensitiveDict

from worker.failures import Permanent, RateLimited, Transient
from worker.github_api import (
    ClockSkew,
    GitHubAPI,
    GitHubRefused,
    clock_offset,
    rate_limit_wait,
    session,
)

NOW = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiI0MjQyIn0.c2lnbmF0dXJl"
IAT_MESSAGE = "'Issued at' claim ('iat') must be an Integer representing a time in the past."
EXP_MESSAGE = "'Expiration time' claim ('exp') is too far in the future"
PRIMARY_MESSAGE = "API rate limit exceeded for installation ID 7."
SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
)


def answer(
    status: int,
    headers: Mapping[str, str] | None = None,
    body: Any = None,
    *,
    raw: bytes | None = None,
    reason: str | None = "Forbidden",
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers = CaseInsensitiveDict(headers or {})
    response._content = raw if raw is not None else orjson.dumps(body if body is not None else {})
    response.reason = reason  # type: ignore[assignment]
    response.encoding = "utf-8"
    return response


def message(text: str) -> dict[str, str]:
    return {"message": text, "documentation_url": "https://docs.github.com/rest"}


# --- rate_limit_wait -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "body", "wait"),
    [
        # Primary limit: the quota is spent until x-ratelimit-reset (epoch seconds).
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1700000030"}, None, 30.0),
        (429, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1700000600"}, None, 600.0),
        (
            403,
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1700000030"},
            message(PRIMARY_MESSAGE),
            30.0,
        ),
        # A reset already past (clocks differ, or it just rolled over): a second, not zero.
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1699999000"}, None, 1.0),
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1700000000"}, None, 1.0),
        # Spent with no reset to go by (missing or garbage): a minute.
        (403, {"x-ratelimit-remaining": "0"}, None, 60.0),
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "soon"}, None, 60.0),
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "-5"}, None, 60.0),
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1.7e9"}, None, 60.0),
        (403, {"x-ratelimit-remaining": " 0 ", "x-ratelimit-reset": " 1700000030 "}, None, 30.0),
        # Retry-After (secondary limits): its seconds, before anything else.
        (403, {"retry-after": "60"}, message(SECONDARY_MESSAGE), 60.0),
        (429, {"retry-after": "17"}, None, 17.0),
        (403, {"retry-after": " 5 "}, None, 5.0),
        (
            403,
            {"retry-after": "7", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "1700003600"},
            None,
            7.0,
        ),
        # Secondary limit with no header at all: at least a minute, as GitHub says.
        (403, {}, message(SECONDARY_MESSAGE), 60.0),
        (403, {"x-ratelimit-remaining": "4999"}, message(SECONDARY_MESSAGE), 60.0),
        (403, {}, message("API RATE LIMIT exceeded"), 60.0),
        (429, {}, None, 60.0),
        (429, {"retry-after": "soon"}, None, 60.0),
        (429, {"retry-after": "-1"}, None, 60.0),
    ],
)
def test_rate_limits_are_recognised_with_the_wait_github_asks_for(status, headers, body, wait):
    assert rate_limit_wait(answer(status, headers, body), NOW) == wait


@pytest.mark.parametrize(
    ("status", "headers", "body"),
    [
        # A 403 that is about permissions, not a rate limit: no waiting will fix it.
        (403, {"x-ratelimit-remaining": "4999"}, message("Resource not accessible by integration")),
        (403, {}, message("This installation has been suspended")),
        (403, {"x-ratelimit-remaining": "12", "x-ratelimit-reset": "1700000030"}, None),
        (403, {"retry-after": "soon"}, None),
        (403, {"retry-after": ""}, None),
        # Only 403 and 429 are rate limits, whatever the headers say.
        (200, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1700000030"}, None),
        (401, {"retry-after": "30"}, message(PRIMARY_MESSAGE)),
        (404, {"x-ratelimit-remaining": "0"}, None),
        (500, {"retry-after": "30"}, None),
        (503, {}, message(SECONDARY_MESSAGE)),
    ],
)
def test_other_answers_are_not_rate_limits(status, headers, body):
    assert rate_limit_wait(answer(status, headers, body), NOW) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"<html><body>403 Forbidden</body></html>",  # a proxy's page
        b"",
        b"[1, 2]",  # JSON, but not an object
        b'{"message": null}',
        b"\xff\xfe not utf-8",
    ],
)
def test_bodies_that_are_not_githubs_json_do_not_break_the_decision(raw):
    assert rate_limit_wait(answer(403, raw=raw), NOW) is None
    assert rate_limit_wait(answer(429, raw=raw), NOW) == 60.0
    # With no usable message, the HTTP reason is read instead.
    assert rate_limit_wait(answer(403, raw=raw, reason="rate limit exceeded"), NOW) == 60.0
    assert rate_limit_wait(answer(403, raw=raw, reason=None), NOW) is None


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "\xb2"},
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "\xb9\xb2"},
    ],
)
def test_garbage_digits_in_a_header_are_ignored_not_raised(headers):
    assert rate_limit_wait(answer(403, headers), NOW) in (None, 60.0)


# --- clock_offset --------------------------------------------------------------------------


def date(epoch: float) -> dict[str, str]:
    return {"date": formatdate(epoch, usegmt=True)}


@pytest.mark.parametrize(
    ("text", "ahead"),
    [
        (IAT_MESSAGE, -3600.0),  # GitHub's clock an hour behind: our iat is in its future
        (EXP_MESSAGE, 3600.0),
        ("'Expiration time' claim ('exp') must be a numeric value representing the future", 90.0),
        (IAT_MESSAGE, 0.0),
    ],
)
def test_a_jwt_refused_for_its_times_gives_githubs_clock_minus_ours(text, ahead):
    response = answer(401, date(NOW + ahead), message(text))
    assert clock_offset(response, NOW) == ahead


def test_the_offset_is_to_the_second_of_the_date_header():
    response = answer(401, {"date": "Tue, 14 Nov 2023 22:13:20 GMT"}, message(IAT_MESSAGE))
    assert clock_offset(response, NOW + 0.75) == -0.75


@pytest.mark.parametrize(
    ("status", "headers", "body"),
    [
        (401, date(NOW + 3600), message("A JSON web token could not be decoded")),
        (401, date(NOW + 3600), message("Bad credentials")),
        (401, date(NOW + 3600), None),
        (403, date(NOW + 3600), message(IAT_MESSAGE)),  # only a 401 is about the JWT
        (200, date(NOW + 3600), message(IAT_MESSAGE)),
        # About the times, but no usable Date to learn the offset from.
        (401, {}, message(IAT_MESSAGE)),
        (401, {"date": ""}, message(EXP_MESSAGE)),
        (401, {"date": "yesterday"}, message(EXP_MESSAGE)),
        (401, {"date": "Tue, 99 Nov 2023 99:13:20 GMT"}, message(EXP_MESSAGE)),
    ],
)
def test_other_refusals_give_no_offset(status, headers, body):
    assert clock_offset(answer(status, headers, body), NOW) is None


@pytest.fixture
def new_york_time() -> Iterator[None]:
    """The process's local time zone five hours behind UTC, for the test's duration."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


@pytest.mark.usefixtures("new_york_time")
@pytest.mark.parametrize("stamp", ["Tue, 14 Nov 2023 22:13:20 -0000", "Tue, 14 Nov 2023 22:13:20"])
def test_a_date_without_a_zone_is_read_as_utc_whatever_the_local_zone(stamp):
    response = answer(401, {"date": stamp}, message(IAT_MESSAGE))
    assert clock_offset(response, NOW) == 0.0


# --- GitHubAPI.request: typed errors whose messages say what to fix ------------------------


class FakeSession:
    """requests.Session's ``request``, answering ``outcome`` (or raising it)."""

    def __init__(self, outcome: requests.Response | Exception) -> None:
        self.outcome = outcome
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        self.calls.append((method, url, kwargs))
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def api(outcome: requests.Response | Exception) -> tuple[GitHubAPI, FakeSession]:
    http = FakeSession(outcome)
    return GitHubAPI("https://api.github.example/", http=http), http  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [200, 201, 204, 304])
def test_answers_below_400_are_returned(status):
    response = answer(status, body={"ok": True})
    github, http = api(response)
    assert github.request("GET", "/app", JWT) is response
    ((method, url, kwargs),) = http.calls
    assert (method, url) == ("GET", "https://api.github.example/app")
    assert kwargs["headers"] == {"Authorization": f"Bearer {JWT}"}
    assert kwargs["timeout"]


def test_a_next_page_url_is_requested_as_given_and_the_body_sent_as_json():
    github, http = api(answer(200))
    url = "https://api.github.example/app/hook/deliveries?per_page=100&cursor=v1_42"
    github.request("POST", url, JWT, body={"a": 1}, params={"b": 2})
    ((_, called, kwargs),) = http.calls
    assert called == url
    assert (kwargs["json"], kwargs["params"]) == ({"a": 1}, {"b": 2})


@pytest.mark.parametrize(
    "exc",
    [
        requests.ConnectionError(f"Max retries exceeded (Authorization: Bearer {JWT})"),
        requests.Timeout("read timed out"),
        requests.exceptions.RetryError("too many 502 error responses"),
        requests.exceptions.SSLError("certificate verify failed"),
    ],
)
def test_an_unreachable_api_is_transient_and_names_the_setting(exc):
    github, _ = api(exc)
    with pytest.raises(Transient) as failure:
        github.request("GET", "/app", JWT)
    text = str(failure.value)
    assert "GITHUB_API_URL" in text
    assert "https://api.github.example" in text
    assert type(exc).__name__ in text
    assert JWT not in text
    assert failure.value.__cause__ is None  # requests' own text (URLs, headers) is not chained
    assert failure.value.__suppress_context__


def test_a_rate_limit_is_raised_with_its_wait():
    github, _ = api(
        answer(403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + 90)})
    )
    with pytest.raises(RateLimited) as failure:
        github.request("GET", "/app/hook/deliveries?per_page=100", JWT)
    assert 85 <= failure.value.wait <= 91
    assert isinstance(failure.value, Transient)
    assert str(failure.value).startswith("GET /app/hook/deliveries: GitHub rate limit, retry in")
    assert "per_page" not in str(failure.value)


def test_a_jwt_refused_for_its_times_is_clock_skew_with_the_offset():
    github, _ = api(answer(401, date(time.time() + 3600), message(IAT_MESSAGE)))
    with pytest.raises(ClockSkew) as failure:
        github.request("POST", "/app/installations/7/access_tokens", JWT)
    assert 3590 <= failure.value.offset <= 3601
    assert isinstance(failure.value, Transient)
    assert "+3600 s" in str(failure.value) or "+3599 s" in str(failure.value)
    assert JWT not in str(failure.value)


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (401, "GITHUB_APP_ID and the private key"),
        (403, "installation settings"),
        (404, "uninstalled"),
        (422, "Contents: read"),
        (418, "githubstatus.com"),
    ],
)
def test_a_refusal_is_permanent_and_says_what_to_check(status, hint):
    github, _ = api(answer(status, {}, message("Bad credentials"), reason="Refused"))
    with pytest.raises(GitHubRefused) as failure:
        github.request("POST", "/app/installations/7/access_tokens?x=1", JWT)
    assert failure.value.status == status
    assert isinstance(failure.value, Permanent)
    text = str(failure.value)
    assert text.startswith(
        f"POST /app/installations/7/access_tokens answered {status} (Bad credentials): "
    )
    assert hint in text
    assert JWT not in text
    assert "\n" not in text


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_server_error_left_after_the_sessions_retries_is_transient(status):
    github, _ = api(answer(status, raw=b"<html>unicorn</html>", reason="Bad Gateway"))
    with pytest.raises(Transient) as failure:
        github.request("GET", "/app", JWT)
    assert not isinstance(failure.value, Permanent)
    assert f"answered {status} (Bad Gateway)" in str(failure.value)
    assert "githubstatus.com" in str(failure.value)


def test_a_long_message_from_github_is_cut_short():
    github, _ = api(answer(404, {}, message("x" * 10_000)))
    with pytest.raises(GitHubRefused) as failure:
        github.request("GET", "/app", JWT)
    assert len(str(failure.value)) < 400


# --- create_installation_token ------------------------------------------------------------


def test_a_token_is_asked_for_narrowed_to_the_repositories_and_permissions():
    github, http = api(answer(201, body={"token": "ghs_x", "expires_at": "2023-11-14T23:13:20Z"}))
    data = github.create_installation_token(
        JWT, 7, repository_ids=(42, 43), permissions={"contents": "read"}
    )
    assert data["token"] == "ghs_x"
    ((method, url, kwargs),) = http.calls
    assert (method, url) == ("POST", "https://api.github.example/app/installations/7/access_tokens")
    assert kwargs["json"] == {"permissions": {"contents": "read"}, "repository_ids": [42, 43]}
    assert kwargs["headers"]["Authorization"] == f"Bearer {JWT}"


def test_no_repository_ids_asks_for_the_whole_installation():
    github, http = api(answer(201, body={"token": "ghs_x", "expires_at": "2023-11-14T23:13:20Z"}))
    github.create_installation_token(JWT, 7, repository_ids=(), permissions={"contents": "read"})
    assert "repository_ids" not in http.calls[0][2]["json"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"token": "ghs_x"},
        {"expires_at": "2023-11-14T23:13:20Z"},
        {"token": None, "expires_at": "2023-11-14T23:13:20Z"},
        {"token": "ghs_x", "expires_at": 1700003600},
    ],
)
def test_a_token_answer_without_token_or_expiry_is_transient(body):
    github, _ = api(answer(201, body=body))
    with pytest.raises(Transient, match=r"lacks 'token' or 'expires_at'") as failure:
        github.create_installation_token(JWT, 7, repository_ids=(42,), permissions={})
    assert "ghs_x" not in str(failure.value)


# --- the session ---------------------------------------------------------------------------


def test_the_session_retries_every_call_on_5xx_and_honours_retry_after():
    http = session(total_retries=3)
    assert http.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert http.headers["Accept"] == "application/vnd.github+json"
    for scheme in ("https://", "http://"):
        retry = http.get_adapter(scheme + "api.github.com").max_retries
        assert retry.total == 3
        assert retry.is_retry("POST", 502)  # token requests are retried too
        assert not retry.is_retry("POST", 404)
        assert retry.respect_retry_after_header
        assert retry.backoff_jitter > 0
        assert not retry.raise_on_status  # the last answer reaches request()'s typed errors
