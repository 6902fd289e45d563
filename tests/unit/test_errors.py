"""Every refusal of the web process: its status code and one line of JSON a user can act on,
decided in one place for the webhook and for Flask's own routes; nothing of an unexpected
exception's text reaches the client."""

from __future__ import annotations

import logging

import orjson
import pytest
import redis
from flask import Flask
from werkzeug import exceptions as http

from webapp.deliveries import BadRequest, BadSignature, DeliveryError, WrongApp
from webapp.errors import (
    MESSAGES,
    REDIS_REFUSED,
    RETRY_AFTER_SECONDS,
    Answer,
    answer_for,
    register_error_handlers,
)

SECRET = "ghs_SuperSecretInstallationToken123"


def body(answer: Answer) -> dict[str, object]:
    assert b"\n" not in answer.body  # one line, whatever the message
    content = orjson.loads(answer.body)
    assert set(content) == {"status", "error"}
    assert content["status"] == "error"
    assert isinstance(content["error"], str)
    assert content["error"]
    return content


# --- refusals of a delivery ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (BadSignature("signature does not match: check WEBHOOK_SECRET"), 401),
        (BadRequest("form-encoded body has no single 'payload' field"), 400),
        (WrongApp("delivery is for App 99, this is GITHUB_APP_ID 4242"), 403),
        (DeliveryError("refused"), 400),
    ],
)
def test_a_refused_delivery_gets_its_classs_status_and_its_message(exc, status):
    answer = answer_for(exc)
    assert answer.status == status
    assert body(answer)["error"] == str(exc)
    assert answer.headers == []  # no Retry-After: sending it again will not help


def test_a_new_delivery_error_class_brings_its_own_status():
    class Gone(DeliveryError):
        status = 410

    answer = answer_for(Gone("this hook was removed"))
    assert (answer.status, body(answer)["error"]) == (410, "this hook was removed")


# --- Redis ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        redis.ConnectionError("Error 111 connecting to localhost:6379. Connection refused."),
        redis.TimeoutError("Timeout reading from socket"),
        redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
    ],
)
def test_redis_unreachable_is_503_with_retry_after(exc):
    answer = answer_for(exc)
    assert answer.status == 503
    assert body(answer)["error"] == MESSAGES[503]
    assert "unreachable" in MESSAGES[503]
    assert "redeliver" in MESSAGES[503]
    assert answer.headers == [("Retry-After", str(RETRY_AFTER_SECONDS))]
    assert str(RETRY_AFTER_SECONDS).isdecimal()  # delay-seconds, as HTTP wants it
    assert b"6379" not in answer.body


@pytest.mark.parametrize(
    "exc",
    [
        redis.ResponseError("OOM command not allowed when used memory > 'maxmemory'."),
        redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
        redis.DataError("Invalid input of type: 'NoneType'"),
        redis.RedisError("something else"),
    ],
)
def test_redis_refusing_to_store_is_503_with_its_own_message(exc):
    answer = answer_for(exc)
    assert answer.status == 503
    assert body(answer)["error"] == REDIS_REFUSED
    assert "refused to store" in REDIS_REFUSED
    assert answer.headers == [("Retry-After", str(RETRY_AFTER_SECONDS))]
    assert str(exc).encode() not in answer.body


def test_a_redis_failure_is_logged_as_a_warning_with_its_class(caplog):
    with caplog.at_level(logging.WARNING, logger="ghapp.web"):
        answer_for(redis.ConnectionError("Connection refused"))
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "ConnectionError" in record.getMessage()


# --- Flask's own refusals ------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [http.NotFound(), http.MethodNotAllowed(["POST"]), http.BadRequest(), http.Forbidden()],
)
def test_an_http_exception_keeps_its_code_and_says_why(exc):
    answer = answer_for(exc)
    assert answer.status == exc.code
    assert body(answer)["error"] == exc.description


def test_a_body_too_large_names_githubs_limit():
    answer = answer_for(http.RequestEntityTooLarge())
    assert answer.status == 413
    assert body(answer)["error"] == MESSAGES[413]
    assert "25 MiB" in MESSAGES[413]


def test_an_http_exception_with_a_custom_description_keeps_it():
    answer = answer_for(http.UnsupportedMediaType("send application/json"))
    assert (answer.status, body(answer)["error"]) == (415, "send application/json")


@pytest.mark.parametrize("exc", [http.InternalServerError(), http.HTTPException()])
def test_an_http_500_or_one_without_a_code_is_the_internal_error(exc):
    answer = answer_for(exc)
    assert answer.status == 500
    assert body(answer)["error"] == MESSAGES[500]


# --- anything else -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError(f"token {SECRET} rejected"),
        KeyError(SECRET),
        ValueError(f"redis://:{SECRET}@localhost:6379/0"),
        OSError(28, "No space left on device"),
    ],
)
def test_an_unexpected_error_is_500_and_leaks_nothing(exc, caplog):
    with caplog.at_level(logging.ERROR, logger="ghapp.web"):
        answer = answer_for(exc)
    assert answer.status == 500
    assert body(answer)["error"] == MESSAGES[500]
    assert "redelivered" in MESSAGES[500]
    assert SECRET.encode() not in answer.body
    assert answer.headers == []
    # The operator gets the traceback in the log instead.
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert record.exc_info[1] is exc


# --- the handlers in a Flask app -----------------------------------------------------------


@pytest.fixture
def client():
    app = Flask("test_errors")
    register_error_handlers(app)

    @app.post("/bad-signature")
    def bad_signature():
        raise BadSignature("signature does not match: check WEBHOOK_SECRET")

    @app.post("/redis-down")
    def redis_down():
        raise redis.ConnectionError("Connection refused")

    @app.post("/bug")
    def bug():
        raise RuntimeError(SECRET)

    return app.test_client()


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("POST", "/bad-signature", 401, "signature does not match: check WEBHOOK_SECRET"),
        ("POST", "/redis-down", 503, MESSAGES[503]),
        ("POST", "/bug", 500, MESSAGES[500]),
        ("POST", "/nowhere", 404, http.NotFound.description),
        ("GET", "/bad-signature", 405, http.MethodNotAllowed.description),
    ],
)
def test_flask_answers_every_error_as_one_line_of_json(client, method, path, status, error):
    response = client.open(path, method=method)
    assert response.status_code == status
    assert response.content_type == "application/json"
    assert response.get_json() == {"status": "error", "error": error}
    assert SECRET.encode() not in response.data


def test_flask_passes_retry_after_on(client):
    response = client.post("/redis-down")
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)


@pytest.mark.parametrize(
    "exc",
    [
        redis.AuthenticationError("invalid username-password pair"),
        redis.ResponseError("NOAUTH Authentication required."),
        redis.ResponseError("WRONGPASS invalid username-password pair"),
    ],
)
def test_redis_refusing_ghapps_credentials_says_to_check_the_password(exc) -> None:
    answer = answer_for(exc)
    assert answer.status == 503
    assert "REDIS_URL's password" in orjson.loads(answer.body)["error"]
