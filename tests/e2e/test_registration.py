"""From nothing to a registered App in a real browser: ``ghapp serve`` with no App shows the
registration page; "Register GitHub App", then GitHub's "Create GitHub App" and "Install" (the
simulator's pages); then a push to the installed repository is processed by that same serve."""

from __future__ import annotations

import html as html_module
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser

from ghapp.local import free_port
from ghapp.simulator import GitHubSimulator
from tests.browser import browser, screenshot
from tests.support import Process, child_env, ghapp, wait_for

__all__ = ["browser"]


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def github(tmp_path: Path) -> Iterator[GitHubSimulator]:
    """A GitHub with no App yet, and a repository of the account that will own the App."""
    simulator = GitHubSimulator(root=tmp_path / "github")
    simulator.start()
    simulator.create_repository("octocat/hello", files={"README.md": "hello\n"})
    yield simulator
    simulator.stop()


@pytest.mark.timeout(180)
def test_register_create_install_then_a_push_is_processed(
    browser: Browser, github: GitHubSimulator, tmp_path: Path, own_redis_url: str
):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    home = tmp_path / "app"
    home.mkdir()
    env = child_env(
        {
            "GITHUB_URL": github.url,
            "GITHUB_API_URL": github.api_url,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "PUBLIC_URL": url,
            "REDIS_URL": own_redis_url,
            "WORKERS": "1",
            "PROCESS_COMMAND": "cat README.md",
            "SANDBOX": "none",
        }
    )
    serve = Process("serve", ghapp(["serve"]), env, home, home)
    page = browser.new_page()
    try:
        wait_for(lambda: answers(url + "/"), 30, "the registration page")
        assert "no GitHub App configured" in serve.output()
        assert requests.post(url + "/webhook", data=b"{}", timeout=5).status_code == 503

        page.goto(url + "/")
        screenshot(page, "register-start")
        page.get_by_role("button", name="Register GitHub App").click()
        page.wait_for_url(f"{github.url}/settings/apps/new*")
        screenshot(page, "register-github-create")
        page.get_by_role("button", name="Create GitHub App").click()
        page.wait_for_url(f"{url}/registered*")
        assert "GitHub App registered" in page.content()
        screenshot(page, "register-done")

        env_file = home / ".env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        (app,) = github.apps()
        assert f'GITHUB_APP_ID="{app.id}"' in env_file.read_text()
        assert app.webhook_url == url + "/webhook"
        assert app.permissions.get("checks") == "write"
        assert "pem" not in page.content().lower()

        page.get_by_role("link", name="install it on your repositories").click()
        page.wait_for_url(f"{github.url}/apps/{app.slug}/installations/new*")
        page.get_by_role("button", name="Install").click()
        page.wait_for_load_state()
        screenshot(page, "register-installed")
        (installation,) = github.installations(app.id)

        # serve has gone on with the App it registered: the whole stack answers.
        wait_for(lambda: answers(url + "/healthz"), 60, "ghapp serve with the new App")
        wait_for(lambda: "dashboard:" in serve.output(), 30, "serve to say where it is")
        (delivery,) = github.push("octocat/hello", files={"notes.txt": "first push\n"})
        assert delivery.status_code == 202, delivery.response_body
        sha = github.branch_tip("octocat/hello")
        check_run = wait_for(
            lambda: [c for c in github.check_runs("octocat/hello", sha) if c["conclusion"]],
            60,
            "the push's check run",
        )[0]
        assert check_run["conclusion"] == "success"
        assert installation.id > 0
    finally:
        page.close()
        serve.stop()


def form_fields(html: str) -> tuple[str, dict[str, str]]:
    """A page's first form: its action and its named inputs' values (unescaped)."""
    action = html_module.unescape(re.search(r'<form[^>]*action="([^"]*)"', html)[1])
    fields = {
        name: html_module.unescape(value)
        for name, value in re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', html)
    }
    return action, fields


def test_the_register_command_writes_env_and_refuses_to_replace_an_app(
    github: GitHubSimulator, tmp_path: Path
):
    port = free_port()
    env = child_env({"GITHUB_URL": github.url, "GITHUB_API_URL": github.api_url})
    command = ["register", "--port", str(port), "--public-url", "https://ci.example.com"]
    register = Process("register", ghapp(command), env, tmp_path, tmp_path)
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/"), 30, "the registration page")
        action, fields = form_fields(requests.get(f"http://127.0.0.1:{port}/", timeout=5).text)
        assert action.startswith(f"{github.url}/settings/apps/new?state=")
        create = requests.post(action, data=fields, timeout=10)
        create_action, create_fields = form_fields(create.text)
        back = requests.post(
            github.url + create_action, data=create_fields, timeout=10, allow_redirects=False
        )
        assert back.status_code == 302
        assert back.headers["Location"].startswith(f"http://127.0.0.1:{port}/registered?code=")
        done = requests.get(back.headers["Location"], timeout=10)
        assert "GitHub App registered" in done.text
        assert register.popen.wait(15) == 0
        printed = register.output()
    finally:
        register.stop()
    (app,) = github.apps()
    assert app.webhook_url == "https://ci.example.com/webhook"
    assert f"{app.html_url(github.url)}/installations/new" in printed
    env_file = tmp_path / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    written = env_file.read_text()
    assert f'GITHUB_APP_ID="{app.id}"' in written
    assert "BEGIN" not in printed  # the key went to .env only

    again = subprocess.run(
        ghapp([*command[:2], str(free_port())]),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert again.returncode == 2
    assert "--force" in again.stderr
    assert env_file.read_text() == written
