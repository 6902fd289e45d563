"""GitHub App manifests: checking one as GitHub's registration page does, and registering the App
it describes (new key, webhook secret, client credentials, a temporary code)."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ghapp.simulator.app_keys import generate_app_key
from ghapp.simulator.models import ManifestCode, SimulatedApp
from ghapp.simulator.registry import Registry

CODE_LIFETIME = 3600  # GitHub: the three steps of the flow must be done within one hour
MAX_NAME_LENGTH = 34  # GitHub refuses longer App names
ACCESS_LEVELS = ("read", "write")
# The App permissions GitHub's manifest accepts (repository, organization and account ones).
KNOWN_PERMISSIONS = frozenset(
    {
        "actions",
        "administration",
        "attestations",
        "checks",
        "codespaces",
        "contents",
        "dependabot_secrets",
        "deployments",
        "discussions",
        "environments",
        "issues",
        "merge_queues",
        "metadata",
        "packages",
        "pages",
        "pull_requests",
        "repository_custom_properties",
        "repository_hooks",
        "repository_projects",
        "secret_scanning_alerts",
        "secrets",
        "security_events",
        "single_file",
        "statuses",
        "vulnerability_alerts",
        "workflows",
        "members",
        "organization_administration",
        "organization_custom_roles",
        "organization_events",
        "organization_hooks",
        "organization_packages",
        "organization_plan",
        "organization_projects",
        "organization_secrets",
        "organization_self_hosted_runners",
        "organization_user_blocking",
        "team_discussions",
        "email_addresses",
        "followers",
        "git_ssh_keys",
        "gpg_keys",
        "interaction_limits",
        "profile",
        "starring",
    }
)
# The webhook events a GitHub App can subscribe to.
KNOWN_EVENTS = frozenset(
    {
        "branch_protection_rule",
        "check_run",
        "check_suite",
        "code_scanning_alert",
        "commit_comment",
        "create",
        "custom_property_values",
        "delete",
        "dependabot_alert",
        "deploy_key",
        "deployment",
        "deployment_protection_rule",
        "deployment_review",
        "deployment_status",
        "discussion",
        "discussion_comment",
        "fork",
        "gollum",
        "issue_comment",
        "issues",
        "label",
        "member",
        "membership",
        "merge_group",
        "meta",
        "milestone",
        "organization",
        "org_block",
        "package",
        "page_build",
        "project",
        "project_card",
        "project_column",
        "public",
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
        "pull_request_review_thread",
        "push",
        "registry_package",
        "release",
        "repository",
        "repository_dispatch",
        "repository_ruleset",
        "secret_scanning_alert",
        "security_advisory",
        "star",
        "status",
        "team",
        "team_add",
        "watch",
        "workflow_dispatch",
        "workflow_job",
        "workflow_run",
    }
)


@dataclass(frozen=True)
class Manifest:
    """A manifest that passed the checks, with GitHub's defaults filled in."""

    name: str
    url: str
    hook_url: str | None
    hook_active: bool
    redirect_url: str | None
    setup_url: str | None
    callback_urls: tuple[str, ...]
    description: str
    public: bool
    permissions: dict[str, str]
    events: tuple[str, ...]


class ManifestRejected(Exception):
    """The manifest cannot be registered; ``errors`` are the lines the page shows."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def slugify(name: str) -> str:
    """The App's slug: its name lowercased, every run of other characters made one ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def parse_manifest(raw: str | None, registry: Registry, name: str | None = None) -> Manifest:
    """Check the manifest's JSON as GitHub's registration page does; ``name`` (the page's
    editable name field) replaces the manifest's. Raises ManifestRejected with every problem."""
    if raw is None or not raw.strip():
        raise ManifestRejected(["Manifest can't be blank"])
    try:
        document = json.loads(raw)
    except ValueError:
        raise ManifestRejected(["Manifest is not valid JSON"]) from None
    if not isinstance(document, dict):
        raise ManifestRejected(["Manifest must be a JSON object"])
    return manifest_from_document(document, registry, name)


def manifest_from_document(
    document: dict[str, Any], registry: Registry, name: str | None = None
) -> Manifest:
    errors: list[str] = []
    app_name = _text(name if name is not None else document.get("name")).strip()
    if not app_name:
        errors.append("Name can't be blank")
    elif len(app_name) > MAX_NAME_LENGTH:
        errors.append(f"Name is too long (maximum is {MAX_NAME_LENGTH} characters)")
    elif not slugify(app_name):
        errors.append("Name must contain a letter or a digit")
    elif registry.name_taken(app_name, slugify(app_name)):
        errors.append("Name has already been taken")
    url = _text(document.get("url")).strip()
    if not url:
        errors.append("Url can't be blank")
    elif not _is_web_url(url):
        errors.append("Url is not a valid URL")
    hook_url, hook_active = _hook(document.get("hook_attributes"), errors)
    redirect_url = _optional_url(document, "redirect_url", "Redirect url", errors)
    setup_url = _optional_url(document, "setup_url", "Setup url", errors)
    callback_urls = _callback_urls(document.get("callback_urls"), errors)
    public = document.get("public", False)
    if not isinstance(public, bool):
        errors.append("Public must be true or false")
        public = False
    permissions = _permissions(document.get("default_permissions"), errors)
    events = _events(document.get("default_events"), errors)
    if errors:
        raise ManifestRejected(errors)
    return Manifest(
        name=app_name,
        url=url,
        hook_url=hook_url,
        hook_active=hook_active,
        redirect_url=redirect_url,
        setup_url=setup_url,
        callback_urls=callback_urls,
        description=_text(document.get("description")),
        public=bool(public),
        permissions=permissions,
        events=events,
    )


def register_app(
    registry: Registry, manifest: Manifest, owner: str
) -> tuple[SimulatedApp, ManifestCode]:
    """Register the App: a new RSA key, webhook secret and client credentials, and the
    temporary code that hands them over once."""
    private_pem, public_pem = generate_app_key()
    webhook_secret = secrets.token_hex(20)
    now = registry.clock.now()

    def build(app_id: str, hook_id: int) -> SimulatedApp:
        return SimulatedApp(
            id=app_id,
            slug=slugify(manifest.name),
            name=manifest.name,
            owner=owner,
            public_key_pem=public_pem,
            permissions=dict(manifest.permissions),
            events=manifest.events,
            webhook_url=manifest.hook_url,
            webhook_secret=webhook_secret.encode(),
            webhook_active=manifest.hook_active,
            hook_id=hook_id,
            client_id="Iv1." + secrets.token_hex(8),
            client_secret=secrets.token_hex(20),
            description=manifest.description,
            external_url=manifest.url,
            setup_url=manifest.setup_url,
            redirect_url=manifest.redirect_url,
            callback_urls=manifest.callback_urls,
            public=manifest.public,
            created_at=now,
        )

    try:
        app = registry.add_app(build)
    except ValueError:
        raise ManifestRejected(["Name has already been taken"]) from None
    code = ManifestCode(
        code=secrets.token_hex(20),
        app_id=app.id,
        private_key_pem=private_pem,
        webhook_secret=webhook_secret,
        issued_at=now,
    )
    registry.add_manifest_code(code)
    return app, code


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _is_web_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _hook(value: Any, errors: list[str]) -> tuple[str | None, bool]:
    """The webhook's URL and whether it is active (no ``hook_attributes``: no webhook)."""
    if value is None:
        return None, False
    if not isinstance(value, dict):
        errors.append("Hook attributes must be an object")
        return None, False
    url = _text(value.get("url")).strip()
    active = value.get("active", True)
    if not isinstance(active, bool):
        errors.append("Hook attributes active must be true or false")
        active = True
    if not url:
        errors.append("Hook url can't be blank")
        return None, False
    if not _is_web_url(url):
        errors.append("Hook url is not a valid URL")
        return None, False
    return url, active


def _optional_url(document: dict[str, Any], key: str, label: str, errors: list[str]) -> str | None:
    value = document.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _is_web_url(value):
        errors.append(f"{label} is not a valid URL")
        return None
    return value


def _callback_urls(value: Any, errors: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors.append("Callback urls must be a list of URLs")
        return ()
    if len(value) > 10:
        errors.append("Callback urls is too long (maximum is 10 URLs)")
    bad = [v for v in value if not _is_web_url(v)]
    if bad:
        errors.append("Callback url is not a valid URL")
    return tuple(value)


def _permissions(value: Any, errors: list[str]) -> dict[str, str]:
    """The permissions asked for, plus ``metadata: read`` that every GitHub App holds."""
    if value is None:
        return {"metadata": "read"}
    if not isinstance(value, dict):
        errors.append("Default permissions must be an object")
        return {}
    permissions: dict[str, str] = {}
    for name, level in value.items():
        if name not in KNOWN_PERMISSIONS:
            errors.append(f"Default permission {name} is not a known permission")
        elif level not in ACCESS_LEVELS:
            errors.append(f"Default permission {name} must be read or write")
        else:
            permissions[name] = level
    return {"metadata": "read", **permissions}


def _events(value: Any, errors: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors.append("Default events must be a list of event names")
        return ()
    unknown = [v for v in value if v not in KNOWN_EVENTS]
    for name in unknown:
        errors.append(f"Default event {name} is not a known event")
    return tuple(dict.fromkeys(value))
