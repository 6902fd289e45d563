"""Plain records the simulator keeps: installations, repositories, minted tokens, requests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SimulatedApp:
    """One GitHub App registered on the simulator (given at construction or made from a
    manifest); the private key is not kept, as GitHub does not keep it either."""

    id: str
    slug: str
    name: str
    owner: str
    public_key_pem: bytes = field(repr=False)
    permissions: dict[str, str]
    events: tuple[str, ...]
    webhook_url: str | None = None
    webhook_secret: bytes | None = field(default=None, repr=False)
    webhook_active: bool = True
    hook_id: int = 0
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    description: str = ""
    external_url: str = ""
    setup_url: str | None = None
    redirect_url: str | None = None
    callback_urls: tuple[str, ...] = ()
    public: bool = False
    created_at: float = 0.0

    def html_url(self, base_url: str) -> str:
        """The App's public page, ``{base_url}/apps/{slug}``."""
        return f"{base_url}/apps/{self.slug}"


@dataclass(frozen=True)
class Installation:
    """One installation of an App on an account. ``repository_ids`` None: the repositories
    created with this installation's id (the Python API's way); else the repositories chosen
    on the install page."""

    id: int
    account: str
    suspended: bool = False
    app_id: str = ""
    repository_ids: frozenset[int] | None = None
    created_at: float = 0.0


@dataclass(frozen=True)
class ManifestCode:
    """The temporary code the manifest flow hands back, redeemable once within an hour for the
    App's settings and its private key."""

    code: str
    app_id: str
    private_key_pem: bytes = field(repr=False)
    webhook_secret: str = field(repr=False)
    issued_at: float


@dataclass(frozen=True)
class Repository:
    """A repository hosted by the simulator, backed by a bare git repository on disk."""

    id: int
    full_name: str
    name: str
    owner: str
    installation_id: int | None  # the installation created with it (None: no installation)
    clone_url: str
    default_branch: str
    path: Path


@dataclass(frozen=True)
class MintRecord:
    """One installation access token the simulator issued."""

    token: str = field(repr=False)
    installation_id: int
    repository_ids: tuple[int, ...] | None
    permissions: dict[str, str]
    expires_at: datetime
    jwt_claims: dict[str, Any]
    minted_at: float


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request the simulator answered, with the status it answered."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    status: int


@dataclass
class InjectedFailure:
    """A canned answer for the next ``remaining`` requests matching method and path prefix."""

    method: str
    path_prefix: str
    status: int
    remaining: int
    headers: dict[str, str]
    body: dict[str, Any] | None

    def matches(self, method: str, path: str) -> bool:
        method_ok = self.method == "*" or self.method.upper() == method.upper()
        return self.remaining > 0 and method_ok and path.startswith(self.path_prefix)


@dataclass(frozen=True)
class HookDelivery:
    """One attempt at delivering a webhook to the App's URL, as GitHub records it."""

    id: int
    guid: str
    delivered_at: datetime
    redelivery: bool
    duration: float
    status: str
    status_code: int
    event: str
    action: str | None
    installation_id: int | None
    repository_id: int | None
    url: str | None = field(default=None, repr=False)
    body: bytes = field(default=b"", repr=False)
    app_id: str | None = None
    request_headers: dict[str, str] = field(default_factory=dict, repr=False)
    response_headers: dict[str, str] = field(default_factory=dict, repr=False)
    response_body: str = field(default="", repr=False)


@dataclass
class CheckSuite:
    """The App's check suite for one commit of one repository (GitHub makes one per head sha
    and App the first time a check run is created for it)."""

    id: int
    repository_id: int
    head_sha: str
    head_branch: str | None
    before: str | None
    created_at: float
    updated_at: float


@dataclass
class CheckRun:
    """One check run as stored; times are ISO 8601 strings as the API shows them."""

    id: int
    repository_id: int
    check_suite_id: int
    head_sha: str
    name: str
    status: str
    conclusion: str | None
    external_id: str
    details_url: str | None
    started_at: str | None
    completed_at: str | None
    output_title: str | None
    output_summary: str | None
    output_text: str | None
    annotations: list[dict[str, Any]]
    created_at: float


@dataclass(frozen=True)
class CommitStatus:
    """One commit status posted to a sha (GitHub keeps every one; the latest per context
    counts in the combined status)."""

    id: int
    repository_id: int
    sha: str
    state: str
    description: str | None
    target_url: str | None
    context: str
    created_at: float
