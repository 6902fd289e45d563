"""The simulator's App-manifest flow over HTTP: register, convert the code, install, deliver."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ghapp.simulator import GitHubSimulator, generate_app_key
from tests.support import HookReceiver

REDIRECT = "http://127.0.0.1:9/registered"  # never fetched: the test reads the Location header


class Form:
    """One ``<form>`` of a page: where it posts, its fields and its buttons' names."""

    def __init__(self, action: str, method: str) -> None:
        self.action, self.method = action, method
        self.fields: list[tuple[str, str]] = []
        self.checkboxes: list[tuple[str, str, bool]] = []
        self.buttons: list[str] = []


class FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._button: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").lower()))
        elif tag == "input" and self.forms:
            if a.get("type") == "checkbox":
                self.forms[-1].checkboxes.append((a["name"], a["value"], "checked" in a))
            elif "name" in a:
                self.forms[-1].fields.append((a["name"], a.get("value", "")))
        elif tag == "button":
            self._button = []

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._button.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "button" and self._button is not None and self.forms:
            self.forms[-1].buttons.append("".join(self._button).strip())
            self._button = None


def form_with_button(html: str, button: str) -> Form:
    parser = FormParser()
    parser.feed(html)
    forms = [f for f in parser.forms if button in f.buttons]
    assert len(forms) == 1, f"no single form with a {button!r} button in {html}"
    return forms[0]


def submit(base: str, form: Form, **overrides: str) -> requests.Response:
    data = dict(form.fields)
    data.update(overrides)
    ticked = [(name, value) for name, value, checked in form.checkboxes if checked]
    return requests.post(
        urljoin(base, form.action),
        data=list(data.items()) + ticked,
        allow_redirects=False,
        timeout=10,
    )


def manifest(name: str, hook_url: str, **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": name,
        "url": "https://example.com/ghapp",
        "hook_attributes": {"url": hook_url},
        "redirect_url": REDIRECT,
        "public": False,
        "default_permissions": {"contents": "read", "metadata": "read", "checks": "write"},
        "default_events": ["push", "check_run", "check_suite"],
    }
    document.update(changes)
    return document


def register(
    sim: GitHubSimulator, document: dict[str, Any], state: str = "s1", org: str | None = None
) -> dict[str, Any]:
    """Post the manifest, press "Create GitHub App", convert the code: the conversion's body."""
    base = f"{sim.url}/organizations/{org}" if org else sim.url
    page = requests.post(
        f"{base}/settings/apps/new",
        params={"state": state},
        data={"manifest": json.dumps(document)},
        timeout=10,
    )
    assert page.status_code == 200, page.text
    created = submit(sim.url, form_with_button(page.text, "Create GitHub App"))
    assert created.status_code == 302
    query = parse_qs(urlsplit(created.headers["Location"]).query)
    assert query["state"] == [state]
    converted = requests.post(f"{sim.api_url}/app-manifests/{query['code'][0]}/conversions")
    assert converted.status_code == 201, converted.text
    return converted.json()


def install(sim: GitHubSimulator, slug: str, account: str) -> requests.Response:
    page = requests.get(f"{sim.url}/apps/{slug}/installations/new?account={account}", timeout=10)
    assert page.status_code == 200, page.text
    return submit(sim.url, form_with_button(page.text, "Install"))


def app_jwt(app_id: int | str, pem: str | bytes) -> str:
    now = int(time.time())
    claims = {"iat": now - 30, "exp": now + 540, "iss": str(app_id)}
    return jwt.encode(claims, pem if isinstance(pem, bytes) else pem.encode(), "RS256")


def signed_with(secret: str | bytes, headers: dict[str, str], body: bytes) -> bool:
    key = secret.encode() if isinstance(secret, str) else secret
    expected = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers.get("X-Hub-Signature-256", ""), expected)


@pytest.fixture
def receiver() -> Iterator[HookReceiver]:
    server = HookReceiver()
    yield server
    server.close()


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[GitHubSimulator]:
    """A simulator with no App, and one repository no App is installed on."""
    with GitHubSimulator(root=tmp_path / "github") as sim:
        sim.create_repository("octo-org/widgets", files={"README.md": "hi\n"})
        sim.create_repository("octo-org/gadgets", files={"README.md": "hi\n"})
        yield sim


def test_manifest_registers_an_app_whose_key_the_simulator_accepts(
    fresh: GitHubSimulator, receiver: HookReceiver
) -> None:
    app = register(fresh, manifest("Widget Checker", receiver.url))

    assert app["slug"] == "widget-checker"
    assert app["name"] == "Widget Checker"
    assert app["owner"]["login"] == "octocat"
    assert app["html_url"] == f"{fresh.url}/apps/widget-checker"
    assert app["permissions"] == {"contents": "read", "metadata": "read", "checks": "write"}
    assert app["events"] == ["push", "check_run", "check_suite"]
    key = serialization.load_pem_private_key(app["pem"].encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert all(app[key] for key in ("webhook_secret", "client_id", "client_secret"))
    record = fresh.app("widget-checker")
    assert (int(record.id), record.webhook_url) == (app["id"], receiver.url)
    assert fresh.apps() == [record]

    installed = install(fresh, "widget-checker", "octo-org")
    assert installed.status_code == 200
    assert "is installed on octo-org" in installed.text
    (installation,) = fresh.installations("widget-checker")

    token = requests.post(
        f"{fresh.api_url}/app/installations/{installation.id}/access_tokens",
        headers={"Authorization": f"Bearer {app_jwt(app['id'], app['pem'])}"},
        timeout=10,
    )
    assert token.status_code == 201, token.text
    assert {r["full_name"] for r in token.json()["repositories"]} == {
        "octo-org/widgets",
        "octo-org/gadgets",
    }
    assert token.json()["permissions"] == app["permissions"]


def test_a_code_converts_once_and_only_within_an_hour(
    fresh: GitHubSimulator, receiver: HookReceiver
) -> None:
    def create(name: str) -> str:
        page = requests.post(
            f"{fresh.url}/settings/apps/new",
            data={"manifest": json.dumps(manifest(name, receiver.url)), "state": "xyz"},
            timeout=10,
        )
        created = submit(fresh.url, form_with_button(page.text, "Create GitHub App"))
        return parse_qs(urlsplit(created.headers["Location"]).query)["code"][0]

    code = create("Once Only")
    url = f"{fresh.api_url}/app-manifests/{code}/conversions"
    assert requests.post(url, timeout=10).status_code == 201
    again = requests.post(url, timeout=10)
    assert again.status_code == 404
    assert again.json()["message"] == "Not Found"

    late = create("Too Late")
    fresh.clock_offset = 3601
    expired = requests.post(f"{fresh.url}/app-manifests/{late}/conversions", timeout=10)
    assert expired.status_code == 404


def test_installing_sends_the_installation_webhook_signed_for_that_app(
    fresh: GitHubSimulator, receiver: HookReceiver
) -> None:
    app = register(fresh, manifest("Hooked", receiver.url))
    page = requests.get(f"{fresh.url}/apps/hooked/installations/new?account=octo-org", timeout=10)
    form = form_with_button(page.text, "Install")
    widgets = fresh.repository("octo-org/widgets")
    assert [(v, checked) for _, v, checked in form.checkboxes] == [
        (str(widgets.id), True),
        (str(fresh.repository("octo-org/gadgets").id), True),
    ]
    form.checkboxes = [(n, v, v == str(widgets.id)) for n, v, _ in form.checkboxes]
    assert submit(fresh.url, form).status_code == 200

    ((headers, body),) = receiver.events("installation")
    assert signed_with(app["webhook_secret"], headers, body)
    assert headers["X-Github-Hook-Installation-Target-Id"] == str(app["id"])
    payload = json.loads(body)
    assert payload["action"] == "created"
    assert payload["installation"]["app_id"] == app["id"]
    assert payload["installation"]["app_slug"] == "hooked"
    assert payload["installation"]["account"]["login"] == "octo-org"
    assert [r["full_name"] for r in payload["repositories"]] == ["octo-org/widgets"]
    assert payload["sender"]["login"] == "octocat"
    (installation,) = fresh.installations("hooked")
    assert payload["installation"]["id"] == installation.id
    assert [i.id for i in fresh.installations_of("octo-org/gadgets")] == []


def test_push_goes_to_every_installed_app_with_its_own_installation_and_signature(
    tmp_path: Path, receiver: HookReceiver
) -> None:
    private_pem, public_pem = generate_app_key()
    other = HookReceiver()
    try:
        with GitHubSimulator("4242", public_pem, tmp_path / "gh") as sim:
            sim.webhook_url, sim.webhook_secret = other.url, "first-secret"
            sim.create_repository("octo-org/widgets", installation_id=7, files={"a": "1"})
            app = register(sim, manifest("Second", receiver.url))
            assert install(sim, "second", "octo-org").status_code == 200
            (second,) = sim.installations("second")

            deliveries = sim.push("octo-org/widgets", files={"a": "2"})

            assert sorted(d.app_id or "" for d in deliveries) == sorted(["4242", str(app["id"])])
            ((first_headers, first_body),) = other.events("push")
            ((second_headers, second_body),) = receiver.events("push")
            assert signed_with("first-secret", first_headers, first_body)
            assert signed_with(app["webhook_secret"], second_headers, second_body)
            assert json.loads(first_body)["installation"]["id"] == 7
            assert json.loads(second_body)["installation"]["id"] == second.id
            assert json.loads(second_body)["after"] == sim.branch_tip("octo-org/widgets")

            # Each App's JWT reaches only its own installations and its own hook deliveries.
            second_jwt = app_jwt(app["id"], app["pem"])
            refused = requests.post(
                f"{sim.api_url}/app/installations/7/access_tokens",
                headers={"Authorization": f"Bearer {second_jwt}"},
                timeout=10,
            )
            assert refused.status_code == 404
            first = requests.post(
                f"{sim.api_url}/app/installations/7/access_tokens",
                headers={"Authorization": f"Bearer {app_jwt(4242, private_pem)}"},
                timeout=10,
            )
            assert first.status_code == 201
            listed = requests.get(
                f"{sim.api_url}/app/hook/deliveries",
                headers={"Authorization": f"Bearer {second_jwt}"},
                timeout=10,
            ).json()
            assert {d["event"] for d in listed} == {"installation", "push"}
            assert all(d["installation_id"] == second.id for d in listed)
    finally:
        other.close()


def test_inactive_hook_gets_no_deliveries(fresh: GitHubSimulator, receiver: HookReceiver) -> None:
    register(
        fresh,
        manifest("Quiet", receiver.url, hook_attributes={"url": receiver.url, "active": False}),
    )
    assert install(fresh, "quiet", "octo-org").status_code == 200
    assert fresh.push("octo-org/widgets", files={"b": "1"}) == []
    assert receiver.received == []


def test_organization_form_and_get_with_manifest_in_the_query(
    fresh: GitHubSimulator, receiver: HookReceiver
) -> None:
    document = manifest("Org App", receiver.url)
    page = requests.get(
        f"{fresh.url}/organizations/octo-org/settings/apps/new",
        params={"manifest": json.dumps(document), "state": "q"},
        timeout=10,
    )
    assert page.status_code == 200
    assert "Create GitHub App for octo-org" in page.text
    for shown in (receiver.url, "checks: write", "push, check_run, check_suite"):
        assert shown in page.text
    form = form_with_button(page.text, "Create GitHub App")
    created = submit(fresh.url, form, name="Renamed On The Page")
    code = parse_qs(urlsplit(created.headers["Location"]).query)["code"][0]
    app = requests.post(f"{fresh.url}/app-manifests/{code}/conversions", timeout=10).json()
    assert (app["name"], app["slug"], app["owner"]["login"]) == (
        "Renamed On The Page",
        "renamed-on-the-page",
        "octo-org",
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"url": None}, "Url can&#39;t be blank"),
        ({"hook_attributes": {"url": "ftp://example.com/hook"}}, "Hook url is not a valid URL"),
        ({"redirect_url": "not a url"}, "Redirect url is not a valid URL"),
        ({"public": "yes"}, "Public must be true or false"),
        ({"default_permissions": {"contents": "admin"}}, "contents must be read or write"),
        ({"default_permissions": {"spaceships": "read"}}, "spaceships is not a known permission"),
        ({"default_events": ["pushh"]}, "Default event pushh is not a known event"),
        ({"name": ""}, "Name can&#39;t be blank"),
    ],
)
def test_invalid_manifest_is_refused_with_the_reason(
    fresh: GitHubSimulator, changes: dict[str, Any], message: str
) -> None:
    document = manifest("Broken", "https://example.com/hook")
    document.update(changes)
    page = requests.post(
        f"{fresh.url}/settings/apps/new", data={"manifest": json.dumps(document)}, timeout=10
    )
    assert page.status_code == 422
    assert message in page.text
    assert "Create GitHub App</button>" not in page.text
    assert fresh.apps() == []


def test_names_are_unique_and_escaped(fresh: GitHubSimulator, receiver: HookReceiver) -> None:
    register(fresh, manifest("Taken", receiver.url))
    page = requests.post(
        f"{fresh.url}/settings/apps/new",
        data={"manifest": json.dumps(manifest("taken", receiver.url))},
        timeout=10,
    )
    assert page.status_code == 422
    assert "Name has already been taken" in page.text

    hostile = manifest("<script>x</script>", receiver.url)
    page = requests.post(
        f"{fresh.url}/settings/apps/new", data={"manifest": json.dumps(hostile)}, timeout=10
    )
    assert page.status_code == 200
    assert "<script>" not in page.text
    assert "&lt;script&gt;x&lt;/script&gt;" in page.text


def test_starts_on_a_chosen_port_with_no_app(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with GitHubSimulator(root=tmp_path / "gh", port=port) as sim:
        assert sim.url == f"http://127.0.0.1:{port}"
        assert sim.apps() == []
        assert sim.app_id is None
        page = requests.get(f"{sim.url}/settings/apps/new", timeout=10)
        assert page.status_code == 422
        assert "Manifest can&#39;t be blank" in page.text
