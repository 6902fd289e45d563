"""``ghapp simulate``: the bundled GitHub simulator as a local GitHub for development, with an App,
an installation and sample repositories, and ``.env`` pointing ghapp at it; ``simulate push`` and
``simulate rerun`` make a commit (or press "Re-run all checks") and deliver it as GitHub would.
"""

from __future__ import annotations

import logging
import secrets
import signal
import socket
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from ghapp.registration import RegistrationError, write_env
from ghapp.simulator import GitHubSimulator
from ghapp.simulator.control import TOKEN_HEADER

log = logging.getLogger("ghapp.simulate")

DEFAULT_REPOSITORIES = ("demo-org/hello-world",)
DEFAULT_PORT = 3001
SAMPLE_FILES = {
    "README.md": "# {name}\n\nA repository of ghapp's local GitHub.\n",
    "src/app.py": "def main() -> None:\n    print('hello, world')\n",
}
INSTALLATION_ID = 1
# In the .env ghapp simulate writes: what `simulate push` and `rerun` show the simulator.
TOKEN_VARIABLE = "GITHUB_SIMULATOR_TOKEN"


class SimulateError(Exception):
    """The simulator cannot do what was asked; the message says what to do."""


def start_simulator(
    root: Path, *, port: int, ghapp_port: int, repositories: Sequence[str], name: str = "ghapp-dev"
) -> tuple[GitHubSimulator, dict[str, str]]:
    """A running simulator with one App (its hook at ghapp's webhook on ``ghapp_port``) installed
    on ``repositories``; and the settings that point ghapp at it."""
    simulator = GitHubSimulator(root=root, port=port)
    simulator.start()
    token = secrets.token_urlsafe(24)
    simulator.enable_control(token)
    manifest = {
        "name": name,
        "url": simulator.url,
        "hook_attributes": {"url": f"http://127.0.0.1:{ghapp_port}/webhook", "active": True},
        "public": False,
        "default_permissions": {"contents": "read", "metadata": "read", "checks": "write"},
        "default_events": ["push", "check_run", "check_suite"],
    }
    app, pem = simulator.register_app(manifest)
    owners = sorted({full_name.partition("/")[0] for full_name in repositories})
    installations: dict[str, int] = {}
    for n, owner in enumerate(owners):
        installations[owner] = INSTALLATION_ID + n
        simulator.add_installation(installations[owner], account=owner, app=app.id)
    for full_name in repositories:
        files = {p: text.format(name=full_name) for p, text in SAMPLE_FILES.items()}
        simulator.create_repository(
            full_name, installation_id=installations[full_name.partition("/")[0]], files=files
        )
    settings = {
        "GITHUB_API_URL": simulator.api_url,
        "GITHUB_URL": simulator.url,
        TOKEN_VARIABLE: token,
    }
    credentials = {
        "id": app.id,
        "slug": app.slug,
        "html_url": app.html_url(simulator.url),
        "pem": pem.decode(),
        "webhook_secret": (app.webhook_secret or b"").decode(),
    }
    return simulator, {**settings, **_credentials_env(credentials)}


def _credentials_env(app: Mapping[str, Any]) -> dict[str, str]:
    return {
        "GITHUB_APP_ID": str(app["id"]),
        "GITHUB_PRIVATE_KEY": str(app["pem"]).strip().replace("\n", "\\n"),
        "GITHUB_WEBHOOK_SECRET": str(app["webhook_secret"]),
        "_slug": str(app["slug"]),
        "_html_url": str(app["html_url"]),
    }


def run_simulation(
    *,
    port: int,
    ghapp_port: int,
    repositories: Sequence[str],
    env_path: Path | None,
    force: bool,
) -> int:
    """Run the simulator until SIGINT or SIGTERM; write ``env_path`` (0600) first, or print the
    settings when it is None."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    _check_port(port)
    with tempfile.TemporaryDirectory(prefix="ghapp-simulate-") as root:
        simulator, env = start_simulator(
            Path(root), port=port, ghapp_port=ghapp_port, repositories=repositories
        )
        try:
            slug, html_url = env.pop("_slug"), env.pop("_html_url")
            if env_path is None:
                for name, value in env.items():
                    print(f'{name}="{value}"')
            else:
                app = {
                    "id": env["GITHUB_APP_ID"],
                    "slug": slug,
                    "html_url": html_url,
                    "pem": env["GITHUB_PRIVATE_KEY"].replace("\\n", "\n"),
                    "webhook_secret": env["GITHUB_WEBHOOK_SECRET"],
                }
                try:
                    write_env(
                        env_path,
                        app,
                        force=force,
                        extra={k: env[k] for k in ("GITHUB_API_URL", "GITHUB_URL", TOKEN_VARIABLE)},
                        replaceable=lambda values: _local(values.get("GITHUB_URL", "")),
                    )
                except RegistrationError as exc:
                    raise SimulateError(str(exc)) from None
                log.info("settings for ghapp written to %s", env_path)
            log.info(
                "local GitHub at %s: App %s installed on %s; deliveries go to "
                "http://127.0.0.1:%s/webhook. Next: `ghapp serve`, then `ghapp simulate push %s`",
                simulator.url,
                slug,
                ", ".join(repositories),
                ghapp_port,
                repositories[0],
            )
            stop.wait()
        finally:
            simulator.stop()
    return 0


def _check_port(port: int) -> None:
    """SimulateError in one line if ``port`` is taken (the HTTP server would exit with two)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise SimulateError(
                f"the local GitHub cannot listen on 127.0.0.1:{port} ({exc.strerror}): stop "
                "what uses it, or choose another port with --port"
            ) from None


def _local(github_url: str) -> bool:
    """Whether ``github_url`` is a local GitHub (an App of ``ghapp simulate``: replaceable)."""
    return urlsplit(github_url).hostname in ("127.0.0.1", "localhost", "::1")


def _control(
    github_url: str, token: str | None, name: str, body: Mapping[str, Any]
) -> dict[str, Any]:
    if not token:
        raise SimulateError(
            f"{TOKEN_VARIABLE} is not set: run this where `ghapp simulate` wrote its .env"
        )
    url = f"{github_url.rstrip('/')}/_simulator/{name}"
    try:
        response = requests.post(url, json=dict(body), headers={TOKEN_HEADER: token}, timeout=60)
    except requests.RequestException as exc:
        raise SimulateError(
            f"no local GitHub answers at {github_url} ({type(exc).__name__}): start "
            "`ghapp simulate` first, and keep GITHUB_URL as it wrote it"
        ) from None
    if response.status_code == 404:
        raise SimulateError(
            f"{github_url} is not ghapp's local GitHub (`ghapp simulate`): check GITHUB_URL"
        )
    if not response.ok:
        try:
            message = response.json().get("message", response.reason)
        except ValueError:
            message = response.reason
        raise SimulateError(f"the local GitHub refused: {message}")
    return dict(response.json())


def simulate_push(
    github_url: str,
    token: str | None,
    repository: str,
    *,
    branch: str | None,
    files: Mapping[str, str],
) -> dict[str, Any]:
    """Commit ``files`` on the running simulator and deliver the push."""
    body = {"repository": repository, "branch": branch, "files": dict(files)}
    return _control(github_url, token, "push", body)


def simulate_rerun(
    github_url: str, token: str | None, repository: str, *, branch: str | None, sha: str | None
) -> dict[str, Any]:
    """Press "Re-run all checks" on a commit of the running simulator."""
    body = {"repository": repository, "branch": branch, "sha": sha}
    return _control(github_url, token, "rerun", body)


def check_repositories(names: Sequence[str]) -> None:
    """SimulateError unless every name is OWNER/NAME."""
    for name in names:
        owner, sep, repo = name.partition("/")
        if not sep or not owner or not repo or "/" in repo:
            raise SimulateError(f"--repository {name!r} is not OWNER/NAME: e.g. demo-org/app")


def parse_files(items: Sequence[str]) -> dict[str, str]:
    """``PATH=CONTENT`` arguments as a mapping; SimulateError for one without ``=``."""
    files: dict[str, str] = {}
    for item in items:
        path, sep, content = item.partition("=")
        if not sep or not path:
            raise SimulateError(f"--file {item!r} is not PATH=CONTENT: e.g. --file README.md=hello")
        files[path] = content.replace("\\n", "\n")
    return files
