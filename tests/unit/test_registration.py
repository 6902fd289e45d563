"""``ghapp register``: the manifest it sends, the page's state check, and ``.env`` written for the
App's owner only, never replacing an App without --force."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from werkzeug.test import Client

from ghapp.core.settings import load_settings, parse_private_key
from ghapp.registration import (
    EVENTS,
    PERMISSIONS,
    Registration,
    RegistrationError,
    env_lines,
    manifest,
    new_app_url,
    write_env,
)

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIB\nAAAA\n-----END RSA PRIVATE KEY-----\n"
APP = {
    "id": 4242,
    "slug": "my-ghapp",
    "html_url": "https://github.com/apps/my-ghapp",
    "pem": PEM,
    "webhook_secret": "s3cret",
    "client_id": "Iv1.abc",
    "client_secret": "cs",
}


def test_the_manifest_asks_for_what_ghapp_uses_and_its_webhook() -> None:
    body = manifest(name="ghapp", public_url="https://ci.example.com", redirect_url="http://r")
    assert body["hook_attributes"] == {"url": "https://ci.example.com/webhook", "active": True}
    assert (
        body["default_permissions"]
        == PERMISSIONS
        == {
            "contents": "read",
            "metadata": "read",
            "checks": "write",
        }
    )
    assert body["default_events"] == EVENTS == ["push", "check_run", "check_suite"]
    assert (body["public"], body["redirect_url"], body["url"]) == (
        False,
        "http://r",
        "https://ci.example.com",
    )


def test_without_a_public_url_the_webhook_is_made_inactive() -> None:
    hook = manifest(name="x", public_url=None, redirect_url="http://r")["hook_attributes"]
    assert hook["active"] is False


def test_the_form_goes_to_the_account_or_the_organisation() -> None:
    assert new_app_url("https://github.com", None, "a b") == (
        "https://github.com/settings/apps/new?state=a+b"
    )
    assert new_app_url("https://ghe.example.com/", "my org", "s") == (
        "https://ghe.example.com/organizations/my%20org/settings/apps/new?state=s"
    )


def test_env_holds_the_key_on_one_line_that_settings_read_back(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("PROCESS_COMMAND=make check\n")
    assert write_env(path, APP, force=False) is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "PROCESS_COMMAND=make check" in text
    assert "# GitHub App my-ghapp: https://github.com/apps/my-ghapp" in text
    from dotenv import dotenv_values

    values = dotenv_values(path)
    settings = load_settings({k: v for k, v in values.items() if v is not None})
    assert settings.app_id == "4242"
    assert settings.private_key == parse_private_key(PEM)
    assert settings.webhook_secrets == (b"s3cret",)
    assert values["GITHUB_CLIENT_SECRET"] == "cs"
    assert len([line for line in env_lines(APP) if "PRIVATE_KEY" in line]) == 1


def test_an_app_already_there_is_replaced_only_with_force_and_backed_up(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    write_env(path, APP, force=False)
    first = path.read_text()
    with pytest.raises(RegistrationError, match="--force"):
        write_env(path, {**APP, "id": 7}, force=False)
    assert path.read_text() == first
    backup = write_env(path, {**APP, "id": 7}, force=True)
    assert backup == tmp_path / ".env.bak"
    assert backup.read_text() == first
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert 'GITHUB_APP_ID="7"' in path.read_text()
    assert path.read_text().count("GITHUB_APP_ID") == 1


def registration(tmp_path: Path) -> Registration:
    return Registration(
        github_url="https://github.com",
        api_url="http://127.0.0.1:9/api/v3",
        env_path=tmp_path / ".env",
        name="ghapp",
        redirect_url="http://127.0.0.1:3000/registered",
    )


def test_the_page_posts_the_manifest_with_its_state(tmp_path: Path) -> None:
    page = registration(tmp_path)
    html = Client(page).get("/").get_data(as_text=True)
    assert f"https://github.com/settings/apps/new?state={page.state}" in html
    assert "Register GitHub App" in html
    assert "&quot;redirect_url&quot;: &quot;http://127.0.0.1:3000/registered&quot;" in html
    assert json.loads(json.dumps(PERMISSIONS))  # the manifest is JSON in the form


@pytest.mark.parametrize("query", ["?code=c&state=wrong", "?state=", "?code=c"])
def test_an_answer_for_another_registration_is_refused(tmp_path: Path, query: str) -> None:
    answer = Client(registration(tmp_path)).get("/registered" + query)
    assert answer.status_code == 400
    assert not (tmp_path / ".env").exists()


def test_the_webhook_answers_503_until_the_app_exists(tmp_path: Path) -> None:
    answer = Client(registration(tmp_path)).post("/webhook", data=b"{}")
    assert answer.status_code == 503
    assert "register" in answer.get_json()["error"]


def test_github_unreachable_is_a_page_saying_what_to_do(tmp_path: Path) -> None:
    page = registration(tmp_path)
    answer = Client(page).get(f"/registered?code=c&state={page.state}")
    assert answer.status_code == 409
    assert "could not be reached" in answer.get_data(as_text=True)
    assert not page.done.is_set()
