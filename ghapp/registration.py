"""``ghapp register``: create the GitHub App from a manifest in one click and write ``.env``.

A page on loopback posts ghapp's App manifest to GitHub (``GITHUB_URL/settings/apps/new``, or an
organisation's) with a random ``state``; GitHub sends the browser back with a code, exchanged
once at ``POST GITHUB_API_URL/app-manifests/{code}/conversions`` for the App's id, key and
secrets, which go to ``.env`` (mode 0600) and nowhere else; the page then leads to the App's
installation page.
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import requests
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

log = logging.getLogger("ghapp.register")

PROJECT_URL = "https://github.com/topics/github-app"
PERMISSIONS = {"contents": "read", "metadata": "read", "checks": "write"}
EVENTS = ["push", "check_run", "check_suite"]
# What ``.env`` gets from the conversion, in this order.
ENV_NAMES = (
    "GITHUB_APP_ID",
    "GITHUB_PRIVATE_KEY",
    "GITHUB_WEBHOOK_SECRET",
    "GITHUB_CLIENT_ID",
    "GITHUB_CLIENT_SECRET",
)
TIMEOUT = (5, 30)
REFRESH_SECONDS = 5  # before the registered page moves on to the installation page


class RegistrationError(Exception):
    """Registration cannot go on; the message says what to do."""


def manifest(
    *,
    name: str,
    public_url: str | None,
    redirect_url: str,
    homepage: str | None = None,
    proxy_url: str | None = None,
) -> dict[str, Any]:
    """GitHub's App manifest for ghapp: the permissions and events it uses, its webhook at
    ``public_url`` (or at the relay's channel, ``proxy_url``; inactive when there is neither:
    GitHub needs an address it can reach)."""
    if proxy_url:
        hook: dict[str, Any] = {"url": proxy_url, "active": True}
    elif public_url:
        hook = {"url": f"{public_url}/webhook", "active": True}
    else:
        hook = {"url": "https://example.com/webhook", "active": False}
    return {
        "name": name,
        "url": homepage or public_url or PROJECT_URL,
        "hook_attributes": hook,
        "redirect_url": redirect_url,
        "public": False,
        "default_permissions": dict(PERMISSIONS),
        "default_events": list(EVENTS),
    }


def new_app_url(github_url: str, org: str | None, state: str) -> str:
    base = github_url.rstrip("/")
    path = (
        f"/organizations/{quote(org, safe='')}/settings/apps/new" if org else "/settings/apps/new"
    )
    return f"{base}{path}?{urlencode({'state': state})}"


def convert(api_url: str, code: str) -> dict[str, Any]:
    """Exchange the code GitHub gave for the App's credentials (it works once, for an hour)."""
    url = f"{api_url.rstrip('/')}/app-manifests/{quote(code, safe='')}/conversions"
    try:
        response = requests.post(
            url, headers={"Accept": "application/vnd.github+json"}, timeout=TIMEOUT
        )
    except requests.RequestException as exc:
        raise RegistrationError(
            f"GitHub at {api_url} could not be reached ({type(exc).__name__}): check "
            "GITHUB_API_URL and the network, then register again"
        ) from None
    if response.status_code != 201:
        raise RegistrationError(
            f"GitHub refused the code ({response.status_code}): it works once and for an hour; "
            "register again"
        )
    data = response.json()
    missing = [k for k in ("id", "pem", "webhook_secret", "html_url") if not data.get(k)]
    if missing:
        raise RegistrationError(f"GitHub's answer lacks {', '.join(missing)}: register again")
    return dict(data)


def env_lines(app: Mapping[str, Any]) -> list[str]:
    """The ``.env`` lines of a registered App (the key on one line, ``\\n``-escaped)."""
    values = {
        "GITHUB_APP_ID": str(app["id"]),
        "GITHUB_PRIVATE_KEY": str(app["pem"]).strip().replace("\n", "\\n"),
        "GITHUB_WEBHOOK_SECRET": str(app["webhook_secret"]),
        "GITHUB_CLIENT_ID": str(app.get("client_id") or ""),
        "GITHUB_CLIENT_SECRET": str(app.get("client_secret") or ""),
    }
    lines = [f"# GitHub App {app.get('slug', '')}: {app.get('html_url', '')}"]
    lines += [f'{name}="{values[name]}"' for name in ENV_NAMES if values[name]]
    return lines


def write_env(
    path: Path,
    app: Mapping[str, Any],
    *,
    force: bool,
    extra: Mapping[str, str] | None = None,
    replaceable: Callable[[Mapping[str, str]], bool] = lambda values: False,
) -> Path | None:
    """Write the App's settings (and ``extra`` ones) into ``path`` (mode 0600), keeping its other
    statements whole (multi-line values too). An App already there is replaced only with
    ``force`` (or when ``replaceable`` says so of the file's values), the old file kept as
    ``.env.bak`` (``.env.bak.1``… when that exists: a backup is never overwritten); the
    backup's path, if one was made."""
    extra = dict(extra or {})
    check_replaceable(path, force=force, replaceable=replaceable)
    old = path.read_text() if path.exists() else ""
    kept = [
        original
        for name, original in _statements(old)
        if name not in ENV_NAMES
        and name not in extra
        and not (name is None and original.startswith("# GitHub App "))
    ]
    backup = None
    if _app_values(old):
        backup = _free_backup(path)
        _write_private(backup, old)
    added = [f'{name}="{value}"' for name, value in extra.items()]
    text = "".join(kept).rstrip("\n")
    text = "\n".join(line for line in [text, *env_lines(app), *added] if line) + "\n"
    _write_private(path, text)
    return backup


def check_replaceable(
    path: Path,
    *,
    force: bool,
    replaceable: Callable[[Mapping[str, str]], bool] = lambda values: False,
) -> None:
    """RegistrationError unless ``path`` holds no App setting yet, or ``force`` (or
    ``replaceable``, judging its values) allows replacing them."""
    text = path.read_text() if path.exists() else ""
    values = _app_values(text)
    if values and not force and not replaceable(_all_values(text)):
        raise RegistrationError(
            f"{path} already holds a GitHub App's settings ({', '.join(sorted(values))}): add "
            "--force to replace them (the old file is kept beside it as .env.bak)"
        )


def _statements(text: str) -> list[tuple[str | None, str]]:
    """``text``'s statements as python-dotenv reads them: (name or None, its whole text)."""
    from dotenv.parser import parse_stream

    return [(b.key, b.original.string) for b in parse_stream(io.StringIO(text))]


def _all_values(text: str) -> dict[str, str]:
    from dotenv.parser import parse_stream

    return {b.key: b.value or "" for b in parse_stream(io.StringIO(text)) if b.key}


def _app_values(text: str) -> dict[str, str]:
    """The App settings ``text`` holds, by name."""
    return {k: v for k, v in _all_values(text).items() if k in ENV_NAMES}


def _free_backup(path: Path) -> Path:
    return _free_name(path.with_name(path.name + ".bak"))


def _free_name(path: Path) -> Path:
    """``path``, or ``path.1``, ``path.2``…: the first that does not exist."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only, from its first byte."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


@dataclass
class Registration:
    """The registration page's state: one manifest, one state value, one outcome."""

    github_url: str
    api_url: str
    env_path: Path
    name: str
    redirect_url: str
    public_url: str | None = None
    org: str | None = None
    force: bool = False
    proxy_url: str | None = None
    serving: bool = False  # ghapp serve's page: it goes on with the App once registered
    state: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    registered: dict[str, Any] | None = field(default=None, repr=False)
    done: threading.Event = field(default_factory=threading.Event)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path == "/" and request.method == "GET":
            response = self.start_page()
        elif request.path == "/registered" and request.method == "GET":
            response = self.callback(request)
        elif request.path == "/webhook":
            response = _json(
                503, {"status": "error", "error": "no GitHub App yet: register it first"}
            )
        else:
            response = _page(404, "Not found", "<p>Nothing here: <a href='/'>register</a>.</p>")
        return response(environ, start_response)

    def start_page(self) -> Response:
        if self.registered:
            return self.next_steps()
        body = manifest(
            name=self.name,
            public_url=self.public_url,
            redirect_url=self.redirect_url,
            proxy_url=self.proxy_url,
        )
        action = new_app_url(self.github_url, self.org, self.state)
        where = f"the organisation {escape(self.org)}" if self.org else "your account"
        if body["hook_attributes"]["active"]:
            relayed = " (relayed to ghapp by <code>ghapp relay</code>)" if self.proxy_url else ""
            hook = (
                "<p>GitHub will send deliveries to "
                f"<code>{escape(body['hook_attributes']['url'])}</code>{relayed}.</p>"
            )
        else:
            hook = (
                "<p>No public URL yet: the App's webhook is created inactive. Set PUBLIC_URL "
                "(a deployment), or WEBHOOK_PROXY_URL (a smee.io channel, relayed by "
                "<code>ghapp relay</code>), and register again; or set the webhook URL in the "
                "App's settings later and make it active.</p>"
            )
        return _page(
            200,
            "Register a GitHub App",
            f"<p>Create the GitHub App <b>{escape(self.name)}</b> on {where} at "
            f"<code>{escape(self.github_url)}</code>, with the permissions ghapp needs "
            "(Contents: read, Checks: write) and the events Push, Check run and Check suite.</p>"
            f"{hook}"
            f'<form method="post" action="{escape(action)}">'
            f'<input type="hidden" name="manifest" value="{escape(json.dumps(body))}">'
            "<button type='submit'>Register GitHub App</button></form>",
        )

    def callback(self, request: Request) -> Response:
        code = request.args.get("code", "")
        state = request.args.get("state", "")
        if not code or not hmac.compare_digest(state.encode(), self.state.encode()):
            return _page(
                400,
                "Registration not recognised",
                "<p>This answer is not for the registration this page started (its state does "
                "not match): <a href='/'>start again</a>.</p>",
            )
        if self.registered:
            return self.next_steps()
        try:
            # Before the code is spent: GitHub gives the App's key once.
            check_replaceable(self.env_path, force=self.force)
            app = convert(self.api_url, code)
        except RegistrationError as exc:
            log.error("%s", exc)
            return _page(409, "Registration failed", f"<p>{escape(str(exc))}</p>")
        try:
            backup = write_env(self.env_path, app, force=True)
        except OSError as exc:
            # The App exists and its key is in hand: keep it somewhere, never lose it.
            fallback = _free_name(self.env_path.with_name(self.env_path.name + ".new"))
            _write_private(fallback, "\n".join(env_lines(app)) + "\n")
            message = (
                f"{self.env_path} could not be written ({exc.strerror}); the App's settings are "
                f"in {fallback} (readable by you only): move them into {self.env_path.name}"
            )
            log.error("%s", message)
            return _page(500, "Registration saved elsewhere", f"<p>{escape(message)}</p>")
        self.registered = {k: app.get(k) for k in ("id", "slug", "html_url", "name")}
        log.info(
            "registered GitHub App %s (id %s); its settings are in %s%s",
            app.get("slug"),
            app.get("id"),
            self.env_path,
            f" (the old file is {backup})" if backup else "",
        )
        self.done.set()
        return self.next_steps()

    def next_steps(self) -> Response:
        app = self.registered or {}
        install = f"{app.get('html_url', '')}/installations/new"
        then = (
            "ghapp serve goes on with it, on this address."
            if self.serving
            else "then run <code>ghapp serve</code> (it reads that file)."
        )
        return _page(
            200,
            "GitHub App registered",
            f"<p>The GitHub App <b>{escape(str(app.get('name') or app.get('slug')))}</b> "
            f"(id {escape(str(app.get('id')))}) exists; its id, key and secrets are in "
            f"<code>{escape(str(self.env_path))}</code> (readable by you only).</p>"
            f"<p>Next: <a href='{escape(install)}'>install it on your repositories</a> (this "
            f"page takes you there in a few seconds); {then}</p>",
            refresh=(REFRESH_SECONDS, install),
        )


def _page(status: int, title: str, body: str, refresh: tuple[int, str] | None = None) -> Response:
    meta = (
        f"<meta http-equiv='refresh' content='{refresh[0]}; url={escape(refresh[1])}'>"
        if refresh
        else ""
    )
    html = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>{meta}"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)} · ghapp</title></head>"
        "<body style='font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; "
        f"padding: 0 1rem'><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return Response(html, status=status, content_type="text/html; charset=utf-8")


def _json(status: int, content: Mapping[str, Any]) -> Response:
    return Response(json.dumps(content), status=status, content_type="application/json")


class _QuietHandler(WSGIRequestHandler):
    """Logs each request without its query string: GitHub's code (worth the App's key for an
    hour) comes back in it."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = self.path.split("?", 1)[0]
        log.debug("%s %s %s", self.command, path, code)


def serve_registration(registration: Registration, host: str, port: int) -> None:
    """Serve the page on ``host:port`` until the App is registered (or the process is stopped)."""
    server = make_server(host, port, registration, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="registration")
    thread.start()
    try:
        registration.done.wait()
        # Let the browser have the page that says what comes next.
        registration.done.wait(0.5)
    finally:
        server.shutdown()
        server.server_close()
