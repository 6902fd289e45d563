"""The dashboard's access rules, its run-again form token and its filters, and its pages rendered
by Flask's test client over history entries written directly (no web or worker process)."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from rq import Queue

from ghapp.core import history
from ghapp.core.settings import Settings
from webapp import dashboard, jobs
from webapp.dashboard import (
    CSRF_LIFETIME,
    BadFilter,
    Filters,
    authorized,
    csrf_token,
    csrf_valid,
    read_filters,
    same_origin,
)

PASSWORD = "correct horse"
NOW = 1_700_000_000.0


def basic(password: str, user: str = "operator") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# Access -----------------------------------------------------------------------------------------


def test_basic_auth_takes_any_user_name_and_only_the_password():
    assert authorized(basic(PASSWORD), PASSWORD)
    assert authorized(basic(PASSWORD, user=""), PASSWORD)
    assert authorized(basic("pässwörd"), "pässwörd")
    for header in (
        None,
        "",
        basic("wrong"),
        basic(PASSWORD + " "),
        basic(PASSWORD[:-1]),
        f"Bearer {PASSWORD}",
        "Basic !!!not-base64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
    ):
        assert not authorized(header, PASSWORD), header


def test_a_form_token_is_good_for_its_entry_until_it_expires():
    token = csrf_token(PASSWORD, "4242:abc", NOW)
    assert csrf_valid(PASSWORD, "4242:abc", token, NOW)
    assert csrf_valid(PASSWORD, "4242:abc", token, NOW + CSRF_LIFETIME - 1)
    assert not csrf_valid(PASSWORD, "4242:abc", token, NOW + CSRF_LIFETIME + 1)
    assert not csrf_valid(PASSWORD, "4242:other", token, NOW)
    assert not csrf_valid("another password", "4242:abc", token, NOW)


def test_a_forged_or_malformed_token_is_refused():
    token = csrf_token(PASSWORD, "4242:abc", NOW)
    expires, mac = token.split(".")
    later = str(int(expires) + 60)
    for forged in (
        "",
        ".",
        mac,
        expires,
        f"{later}.{mac}",  # a longer life under the same signature
        f"{expires}.{mac[:-1]}",
        f"{expires}.{mac.upper()}",
        f"{expires}.{mac}é",
        f"\uff19\uff19.{mac}",  # digits of another script
        f"{'9' * 40}.{mac}",
    ):
        assert not csrf_valid(PASSWORD, "4242:abc", forged, NOW), forged


def test_a_post_from_another_site_is_refused():
    host = "ghapp.example:8000"
    assert same_origin(None, None, host, None)  # curl: judged by the token alone
    assert same_origin("http://ghapp.example:8000", "same-origin", host, None)
    assert same_origin("https://ghapp.example", None, "127.0.0.1:8000", "https://ghapp.example")
    assert not same_origin("https://evil.example", None, host, None)
    assert not same_origin("null", None, host, None)
    assert not same_origin(None, "cross-site", host, None)
    assert not same_origin("http://ghapp.example:8000", "same-site", host, None)


def test_filters_accept_names_and_refuse_anything_else_in_one_line():
    assert read_filters({}) == Filters()
    assert read_filters({"repository": " octo-org/app ", "outcome": "failed", "event": "push"}) == (
        Filters("octo-org/app", "failed", "push")
    )
    assert read_filters({"outcome": "refused", "rows": "20"}).rows == 20
    for bad in (
        {"repository": "no-slash"},
        {"repository": "a/b/c"},
        {"repository": "<script>/x"},
        {"outcome": "exploded"},
        {"event": "Push!"},
        {"rows": "0"},
        {"rows": "501"},
        {"rows": "ten"},
    ):
        with pytest.raises(BadFilter) as raised:
            read_filters(bad)
        assert "\n" not in str(raised.value)


# Pages --------------------------------------------------------------------------------------------


@pytest.fixture
def queue_name() -> str:
    return f"dashboard-test-{uuid.uuid4().hex[:8]}"


def make_client(connection: redis.Redis, settings: Settings) -> FlaskClient:
    app = Flask("webapp")
    app.extensions["ghapp.redis"] = connection
    app.extensions["ghapp.settings"] = settings
    app.register_blueprint(jobs.blueprint)
    app.register_blueprint(dashboard.blueprint)
    return app.test_client()


@pytest.fixture
def client(redis_client: redis.Redis, queue_name: str) -> Iterator[FlaskClient]:
    settings = Settings(dashboard_password=PASSWORD, queue_name=queue_name)
    test_client = make_client(redis_client, settings)
    test_client.environ_base["HTTP_AUTHORIZATION"] = basic(PASSWORD)
    yield test_client
    Queue(queue_name, connection=redis_client).empty()


def write_entry(
    connection: redis.Redis, *, repository: str, push: bool = True, **fields: str
) -> str:
    delivery = str(uuid.uuid4())
    job_fields = {
        "delivery": delivery,
        "installation_id": 7,
        "repository_id": 99,
        "repository": repository,
        "clone_url": f"https://github.example/{repository}.git",
        "ref": "refs/heads/main",
        "before": "0" * 40,
        "sha": "a" * 40,
        "payload_key": "ghapp:payload:4242:" + delivery,
    }
    history.record(
        connection,
        app="4242",
        delivery=delivery,
        fields={
            "event": "push",
            "repository": repository,
            "ref": "refs/heads/main",
            "sha": "a" * 40,
            "status": 202,
            "outcome": "queued",
            "push": job_fields if push else None,
            **fields,
        },
    )
    return history.entry_id("4242", delivery)


def test_without_a_password_every_dashboard_url_is_404(redis_client: redis.Redis):
    client = make_client(redis_client, Settings())
    client.environ_base["HTTP_AUTHORIZATION"] = basic("anything")
    for url in ("/dashboard", "/dashboard/deliveries/4242:x", "/dashboard/static/dashboard.css"):
        assert client.get(url).status_code == 404, url
    assert client.post("/dashboard/deliveries/4242:x/run-again").status_code == 404


def test_a_wrong_password_is_asked_again(client: FlaskClient):
    for headers in ({"Authorization": basic("wrong")}, {"Authorization": ""}):
        answer = client.get("/dashboard", headers=headers)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == 'Basic realm="ghapp"'
        assert "DASHBOARD_PASSWORD" in answer.text
        assert PASSWORD not in answer.text


def test_the_list_escapes_what_came_from_outside_and_hides_the_payload_key(
    client: FlaskClient, redis_client: redis.Redis, fresh_repo_name: str
):
    entry_id = write_entry(
        redis_client, repository=fresh_repo_name, reason="<script>alert(1)</script>"
    )
    answer = client.get("/dashboard", query_string={"repository": fresh_repo_name})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/html")
    assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
    assert f'data-entry="{entry_id}"' in answer.text
    assert "<script>alert(1)</script>" not in answer.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in answer.text
    page = client.get(f"/dashboard/deliveries/{entry_id}")
    assert page.status_code == 200
    assert "<script>" not in page.text
    assert "payload" not in page.text  # neither the push's payload key, nor its name
    assert 'name="csrf_token"' in page.text


def test_a_check_run_link_that_is_no_web_address_is_not_a_link(
    client: FlaskClient, redis_client: redis.Redis, fresh_repo_name: str
):
    entry_id = write_entry(
        redis_client, repository=fresh_repo_name, check_run_url="javascript:alert(1)"
    )
    page = client.get(f"/dashboard/deliveries/{entry_id}")
    assert "javascript:" not in page.text


def test_bad_input_gets_a_4xx_page_never_a_5xx(client: FlaskClient):
    for url, status in (
        ("/dashboard?outcome=exploded", 400),
        ("/dashboard?rows=-1", 400),
        ("/dashboard?repository=%00", 400),
        ("/dashboard/deliveries/4242:no-such-delivery", 404),
        ("/dashboard/deliveries/" + "x" * 5000, 404),
        ("/dashboard/deliveries/%3Cb%3E", 404),
        ("/dashboard/nothing-here", 404),
    ):
        answer = client.get(url)
        assert answer.status_code == status, url
        assert answer.headers["Content-Type"].startswith("text/html"), url
        assert "Traceback" not in answer.text
        assert "<b>" not in answer.text


def test_run_again_needs_the_pages_token_and_a_push(
    client: FlaskClient, redis_client: redis.Redis, fresh_repo_name: str, queue_name: str
):
    queue = Queue(queue_name, connection=redis_client)
    entry_id = write_entry(redis_client, repository=fresh_repo_name)
    url = f"/dashboard/deliveries/{entry_id}/run-again"
    other_token = csrf_token(PASSWORD, "4242:another", NOW)
    assert client.post(url).status_code == 403
    assert client.post(url, data={"csrf_token": other_token}).status_code == 403
    good = csrf_token(PASSWORD, entry_id, time.time())
    cross = client.post(url, data={"csrf_token": good}, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403
    assert queue.count == 0

    again = client.post(url, data={"csrf_token": good}, headers={"Origin": "http://localhost"})
    assert again.status_code == 303
    assert queue.count == 1
    (job,) = queue.get_jobs()
    new_page = client.get(again.headers["Location"])
    assert new_page.status_code == 200
    assert job.id in new_page.text
    assert "payload" not in new_page.text
    # The original's page links to the new delivery.
    assert job.meta["delivery"] in client.get(f"/dashboard/deliveries/{entry_id}").text

    ignored_id = write_entry(redis_client, repository=fresh_repo_name, push=False)
    token = csrf_token(PASSWORD, ignored_id, time.time())
    refused = client.post(
        f"/dashboard/deliveries/{ignored_id}/run-again", data={"csrf_token": token}
    )
    assert refused.status_code == 409
    assert "no push to run again" in refused.text
    assert queue.count == 1
