"""The App registration pages (manifest form, "Create GitHub App", install page) and the
``/app-manifests/{code}/conversions`` endpoint, as plain escaped HTML and GitHub-shaped JSON."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from markupsafe import Markup, escape
from werkzeug.wrappers import Request, Response

from ghapp.simulator.manifests import (
    CODE_LIFETIME,
    Manifest,
    ManifestRejected,
    parse_manifest,
    register_app,
)
from ghapp.simulator.models import Installation, SimulatedApp
from ghapp.simulator.payloads import Links, installation_event, integration_payload
from ghapp.simulator.registry import Registry
from ghapp.simulator.repositories import AUTHOR_LOGIN
from ghapp.simulator.responses import json_response
from ghapp.simulator.webhooks import WebhookSender

SIGNED_IN_USER = AUTHOR_LOGIN  # who "is signed in" to the simulator's pages and owns their Apps
CONVERSION_DOCS = "https://docs.github.com/rest/apps/apps#create-a-github-app-from-a-manifest"


class AppPages:
    """Handlers for the manifest flow and the install page of one simulator."""

    def __init__(self, registry: Registry, webhooks: WebhookSender) -> None:
        self._registry = registry
        self._webhooks = webhooks

    # Registration ------------------------------------------------------------------------

    def new_app(self, request: Request, org: str | None) -> Response:
        """``GET|POST /settings/apps/new`` (and the organization's): the manifest's settings
        and a "Create GitHub App" form, or the manifest's problems (422)."""
        raw = request.values.get("manifest")
        state = request.values.get("state", "")
        owner = org or SIGNED_IN_USER
        try:
            manifest = parse_manifest(raw, self._registry)
        except ManifestRejected as exc:
            return _error_page("Invalid GitHub App manifest", exc.errors)
        action = f"{_settings_base(org)}/new/create"
        return _page(
            f"Create GitHub App for {owner}",
            Markup("<h1>Create GitHub App for {}</h1>").format(owner),
            _settings_table(manifest),
            Markup(
                '<form method="post" action="{action}">'
                '<input type="hidden" name="manifest" value="{manifest}">'
                '<input type="hidden" name="state" value="{state}">'
                '<p><label for="name">GitHub App name</label> '
                '<input type="text" id="name" name="name" value="{name}" required></p>'
                '<button type="submit">Create GitHub App</button>'
                "</form>"
            ).format(action=action, manifest=raw or "", state=state, name=manifest.name),
        )

    def create_app(self, request: Request, org: str | None) -> Response:
        """``POST .../settings/apps/new/create``: register the App and redirect to the
        manifest's ``redirect_url`` with ``code`` and ``state``."""
        state = request.form.get("state", "")
        try:
            manifest = parse_manifest(
                request.form.get("manifest"), self._registry, request.form.get("name")
            )
            app, code = register_app(self._registry, manifest, org or SIGNED_IN_USER)
        except ManifestRejected as exc:
            return _error_page("Invalid GitHub App manifest", exc.errors)
        query = {"code": code.code, **({"state": state} if state else {})}
        if manifest.redirect_url:
            return _redirect(_with_query(manifest.redirect_url, query))
        links = _links(request)
        return _page(
            f"{app.name} created",
            Markup("<h1>{} created</h1>").format(app.name),
            Markup(
                "<p>No redirect URL was given; the temporary code is <code>{code}</code>.</p>"
                '<p><a href="{install}">Install {name}</a></p>'
            ).format(
                code=code.code,
                install=app.html_url(links.html_url) + "/installations/new",
                name=app.name,
            ),
        )

    def convert(self, request: Request, code: str) -> Response:
        """``POST /app-manifests/{code}/conversions``: the App's settings with its ``pem``,
        ``webhook_secret`` and client credentials; each code works once, within an hour."""
        record = self._registry.redeem_manifest_code(code, CODE_LIFETIME)
        app = self._registry.app(record.app_id) if record is not None else None
        if record is None or app is None:
            return json_response(
                404, {"message": "Not Found", "documentation_url": CONVERSION_DOCS}
            )
        links = _links(request)
        body = integration_payload(app, links, self._registry.account_id(app.owner))
        body.update(
            {
                "client_secret": app.client_secret,
                "webhook_secret": record.webhook_secret,
                "pem": record.private_key_pem.decode(),
            }
        )
        return json_response(201, body)

    # The App's pages -----------------------------------------------------------------------

    def app_page(self, request: Request, slug: str) -> Response:
        """``GET /apps/{slug}``: the App's public page with a link to install it."""
        app = self._registry.app(slug)
        if app is None:
            return _error_page("Not Found", ["No such GitHub App"], 404)
        install = f"/apps/{app.slug}/installations/new"
        return _page(
            app.name,
            Markup("<h1>{}</h1><p>{}</p>").format(app.name, app.description),
            Markup('<p><a href="{}">Install</a></p>').format(install),
        )

    def install_page(self, request: Request, slug: str) -> Response:
        """``GET /apps/{slug}/installations/new[?account=LOGIN]``: the account's repositories
        with checkboxes (all ticked) and an "Install" button; links switch the account."""
        app = self._registry.app(slug)
        if app is None:
            return _error_page("Not Found", ["No such GitHub App"], 404)
        accounts = self._accounts(app)
        account = request.args.get("account") or _default_account(app, accounts, self._registry)
        repositories = self._registry.repositories(account)
        switch = Markup("").join(
            Markup('<li><a href="?{}">{}</a></li>').format(urlencode({"account": a}), a)
            for a in accounts
            if a.lower() != account.lower()
        )
        boxes = Markup("").join(
            Markup(
                '<li><label><input type="checkbox" name="repository_ids" value="{id}" checked> '
                "{name}</label></li>"
            ).format(id=repo.id, name=repo.full_name)
            for repo in repositories
        )
        return _page(
            f"Install {app.name}",
            Markup("<h1>Install {} on {}</h1>").format(app.name, account),
            Markup("<p>Other accounts:</p><ul>{}</ul>").format(switch) if switch else "",
            Markup(
                '<form method="post" action="/apps/{slug}/installations/new">'
                '<input type="hidden" name="account" value="{account}">'
                "<fieldset><legend>Repositories</legend><ul>{boxes}</ul></fieldset>"
                '<button type="submit">Install</button>'
                "</form>"
            ).format(
                slug=app.slug,
                account=account,
                boxes=boxes or Markup("<li>This account has no repositories.</li>"),
            ),
        )

    def install(self, request: Request, slug: str) -> Response:
        """``POST /apps/{slug}/installations/new``: install the App on the ticked repositories
        of ``account`` (or change the repositories of its installation there), send the
        ``installation`` webhook (``created``) to the App's active hook, then redirect to the
        App's ``setup_url`` (with ``installation_id`` and ``setup_action``) or show a page."""
        app = self._registry.app(slug)
        if app is None:
            return _error_page("Not Found", ["No such GitHub App"], 404)
        account = request.form.get("account") or app.owner
        owned = {r.id: r for r in self._registry.repositories(account)}
        chosen = [owned[i] for i in _ints(request.form.getlist("repository_ids")) if i in owned]
        if not chosen:
            return _error_page("Nothing to install", ["Choose at least one repository."])
        existing = next(
            (
                i
                for i in self._registry.installations(app.id)
                if i.account.lower() == account.lower()
            ),
            None,
        )
        ids = frozenset(r.id for r in chosen)
        links = _links(request)
        if existing is None:
            installation = self._registry.add_installation(None, account, False, app.id, ids)
            self.deliver_installation(app, installation, links)
            action = "install"
        else:
            installation = self._registry.set_installation_repositories(existing.id, ids)
            action = "update"
        if app.setup_url:
            query = {"installation_id": str(installation.id), "setup_action": action}
            return _redirect(_with_query(app.setup_url, query))
        names = Markup(", ").join(r.full_name for r in chosen)
        return _page(
            f"{app.name} installed",
            Markup("<h1>{} is installed on {}</h1>").format(app.name, account),
            Markup("<p>Installation {} can access: {}.</p>").format(installation.id, names),
        )

    def deliver_installation(
        self, app: SimulatedApp, installation: Installation, links: Links
    ) -> None:
        """Send the ``installation`` ``created`` event, if the App's hook is active."""
        if not app.webhook_active or not app.webhook_url:
            return
        payload = installation_event(
            "created",
            installation,
            app,
            self._registry.repositories_of(installation.id),
            account_id=self._registry.account_id(installation.account),
            links=links,
        )
        self._webhooks.send("installation", payload, app_id=app.id)

    def _accounts(self, app: SimulatedApp) -> list[str]:
        """The App's owner, then every other owner of a repository, in first-seen order."""
        logins = [app.owner] + [r.owner for r in self._registry.repositories()]
        return list({login.lower(): login for login in reversed(logins)}.values())[::-1]


def _default_account(app: SimulatedApp, accounts: list[str], registry: Registry) -> str:
    """The App's owner if it has repositories, else the first account that has some."""
    for login in accounts:
        if registry.repositories(login):
            return login
    return app.owner


def _settings_base(org: str | None) -> str:
    return f"/organizations/{org}/settings/apps" if org else "/settings/apps"


def _settings_table(manifest: Manifest) -> Markup:
    if manifest.hook_url:
        hook = manifest.hook_url + ("" if manifest.hook_active else " (inactive)")
    else:
        hook = "none"
    rows = [
        ("Name", manifest.name),
        ("Homepage URL", manifest.url),
        ("Webhook URL", hook),
        ("Redirect URL", manifest.redirect_url or "none"),
        ("Setup URL", manifest.setup_url or "none"),
        ("Public", "yes" if manifest.public else "no"),
        (
            "Permissions",
            ", ".join(f"{name}: {level}" for name, level in sorted(manifest.permissions.items())),
        ),
        ("Events", ", ".join(manifest.events) or "none"),
    ]
    body = Markup("").join(
        Markup("<tr><th scope='row'>{}</th><td>{}</td></tr>").format(k, v) for k, v in rows
    )
    return Markup("<table>{}</table>").format(body)


def _page(title: str, *parts: Markup | str, status: int = 200) -> Response:
    body = Markup("").join(escape(p) for p in parts)
    html = Markup(
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        "</head><body><main>{body}</main></body></html>"
    ).format(title=title, body=body)
    return Response(str(html), status=status, content_type="text/html; charset=utf-8")


def _error_page(title: str, errors: Iterable[str], status: int = 422) -> Response:
    items = Markup("").join(Markup("<li>{}</li>").format(e) for e in errors)
    return _page(
        title,
        Markup("<h1>{}</h1><ul role='alert'>{}</ul>").format(title, items),
        status=status,
    )


def _redirect(location: str) -> Response:
    response = Response(status=302)
    response.headers["Location"] = location
    return response


def _with_query(url: str, extra: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in extra]
    return urlunsplit(parts._replace(query=urlencode(query + list(extra.items()))))


def _ints(values: list[str]) -> list[int]:
    return [int(v) for v in values if v.isdigit()]


def _links(request: Request) -> Links:
    html_url = request.host_url.rstrip("/")
    return Links(html_url=html_url, api_url=html_url + "/api/v3")
