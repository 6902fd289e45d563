"""``ghapp register``: the manifest it sends, the page's state check, and ``.env`` written for the
App's owner only, never replacing an App without --force."""

from __future__ import annotations

import errno
import json
import logging
import stat
import time
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
from ghapp.simulator import generate_app_key

PEM = generate_app_key()[0].decode()  # a key made for this run
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


def test_a_backup_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    write_env(path, APP, force=False)
    write_env(path, {**APP, "id": 7}, force=True)
    write_env(path, {**APP, "id": 8}, force=True)
    assert 'GITHUB_APP_ID="4242"' in (tmp_path / ".env.bak").read_text()
    assert 'GITHUB_APP_ID="7"' in (tmp_path / ".env.bak.1").read_text()
    assert stat.S_IMODE((tmp_path / ".env.bak.1").stat().st_mode) == 0o600


def test_other_statements_are_kept_whole_and_an_old_multi_line_key_goes_whole(
    tmp_path: Path,
) -> None:
    path = tmp_path / ".env"
    path.write_text(
        '# my settings\nexport PROCESS_COMMAND="make check"\n'
        'GITHUB_PRIVATE_KEY="old key line 1\nMIIOLD\nold key line 3"\n'
        'NOTE="two\nlines"\n'
    )
    write_env(path, APP, force=True)
    text = path.read_text()
    assert "MIIOLD" not in text
    assert '# my settings\nexport PROCESS_COMMAND="make check"\n' in text
    assert 'NOTE="two\nlines"' in text
    from dotenv import dotenv_values

    values = dotenv_values(path)
    assert values["NOTE"] == "two\nlines"
    assert values["GITHUB_APP_ID"] == "4242"
    assert "MIIOLD" in (tmp_path / ".env.bak").read_text()  # the old one, kept


def test_any_app_setting_already_there_counts_as_an_app(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("GITHUB_WEBHOOK_SECRET=precious\n")
    with pytest.raises(RegistrationError, match="GITHUB_WEBHOOK_SECRET"):
        write_env(path, APP, force=False)
    assert path.read_text() == "GITHUB_WEBHOOK_SECRET=precious\n"


def test_an_app_already_in_env_is_refused_before_githubs_code_is_spent(tmp_path: Path) -> None:
    page = registration(tmp_path)
    (tmp_path / ".env").write_text("GITHUB_APP_ID=5\n")
    answer = Client(page).get(f"/registered?code=c&state={page.state}")
    assert answer.status_code == 409
    body = answer.get_data(as_text=True)
    assert "--force" in body
    assert "could not be reached" not in body  # GitHub was not asked: the code still works


def test_an_env_that_cannot_be_written_keeps_the_app_in_a_file_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ghapp.registration as registration_module

    page = registration(tmp_path)

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    # GitHub's answer, and a disk that fills as .env is written (neither reachable otherwise).
    monkeypatch.setattr(registration_module, "convert", lambda api_url, code: APP)
    monkeypatch.setattr(registration_module, "write_env", disk_full)
    answer = Client(page).get(f"/registered?code=c&state={page.state}")
    assert answer.status_code == 500
    saved = tmp_path / ".env.new"
    assert str(saved) in answer.get_data(as_text=True)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert PEM.splitlines()[1] in saved.read_text()


def test_the_page_never_logs_githubs_code(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import threading

    import requests

    from ghapp.local import free_port
    from ghapp.registration import serve_registration

    page = registration(tmp_path)
    port = free_port()
    server = threading.Thread(target=serve_registration, args=(page, "127.0.0.1", port))
    server.start()
    try:
        with caplog.at_level(logging.DEBUG):
            url = f"http://127.0.0.1:{port}/registered?code=SECRETCODE&state=wrong"
            for _ in range(50):
                try:
                    assert requests.get(url, timeout=2).status_code == 400
                    break
                except requests.ConnectionError:
                    time.sleep(0.05)
        served = [r.getMessage() for r in caplog.records if r.name.startswith("ghapp")]
        assert any("/registered" in line for line in served)
        assert not any("SECRETCODE" in line for line in served)
        werkzeug_lines = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
        assert not any("SECRETCODE" in line for line in werkzeug_lines)
    finally:
        page.done.set()
        server.join(5)


def test_with_a_relay_channel_the_webhook_is_the_channel() -> None:
    hook = manifest(
        name="x", public_url=None, redirect_url="http://r", proxy_url="https://smee.io/abc"
    )["hook_attributes"]
    assert hook == {"url": "https://smee.io/abc", "active": True}
