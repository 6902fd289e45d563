"""The simulator's WSGI application: records requests, injects failures, routes to handlers."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.wrappers import Request, Response

from ghapp.simulator.api import mint_access_token
from ghapp.simulator.app_jwt import AppJwtVerifier
from ghapp.simulator.app_pages import AppPages
from ghapp.simulator.checks import ChecksApi
from ghapp.simulator.control import PREFIX as CONTROL_PREFIX
from ghapp.simulator.git_http import GitHttpBackend
from ghapp.simulator.hook_api import get_delivery, list_deliveries, redeliver
from ghapp.simulator.models import RequestRecord
from ghapp.simulator.payloads import Links
from ghapp.simulator.registry import Registry
from ghapp.simulator.responses import error_response, json_response, not_found
from ghapp.simulator.statuses import StatusesApi
from ghapp.simulator.webhooks import WebhookSender

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v3"
_ACCESS_TOKENS = re.compile(r"^(?:/api/v3)?/app/installations/(?P<id>\d+)/access_tokens/?$")
_DELIVERIES = re.compile(r"^(?:/api/v3)?/app/hook/deliveries/?$")
_DELIVERY = re.compile(r"^(?:/api/v3)?/app/hook/deliveries/(?P<id>\d+)/?$")
_ATTEMPTS = re.compile(r"^(?:/api/v3)?/app/hook/deliveries/(?P<id>\d+)/attempts/?$")
_CONVERSIONS = re.compile(r"^(?:/api/v3)?/app-manifests/(?P<code>[^/]+)/conversions/?$")
_NEW_APP = re.compile(r"^(?:/organizations/(?P<org>[^/]+))?/settings/apps/new/?$")
_CREATE_APP = re.compile(r"^(?:/organizations/(?P<org>[^/]+))?/settings/apps/new/create/?$")
_APP_PAGE = re.compile(r"^/apps/(?P<slug>[^/]+)/?$")
_INSTALL_PAGE = re.compile(r"^/apps/(?P<slug>[^/]+)/installations/new/?$")
_REPO = r"^(?:/api/v3)?/repos/(?P<owner>[^/]+)/(?P<name>[^/]+)"
_CHECK_RUNS = re.compile(_REPO + r"/check-runs/?$")
_CHECK_RUN = re.compile(_REPO + r"/check-runs/(?P<run_id>\d+)/?$")
_ANNOTATIONS = re.compile(_REPO + r"/check-runs/(?P<run_id>\d+)/annotations/?$")
_REF_CHECK_RUNS = re.compile(_REPO + r"/commits/(?P<ref>.+?)/check-runs/?$")
_STATUSES = re.compile(_REPO + r"/statuses/(?P<sha>[^/]+)/?$")
_COMBINED_STATUS = re.compile(_REPO + r"/commits/(?P<ref>.+?)/status/?$")
_GIT = re.compile(
    r"^/(?P<owner>[^/]+)/(?P<name>[^/]+?)(?:\.git)?/"
    r"(?P<service>info/refs|git-upload-pack|git-receive-pack)$"
)
StartResponse = Callable[..., Any]
_Route = tuple[re.Pattern[str], str, Callable[..., Response]]


class SimulatorApp:
    """WSGI callable serving the REST API (at ``/`` and ``/api/v3``) and git smart HTTP."""

    def __init__(
        self,
        registry: Registry,
        verifier: AppJwtVerifier,
        git_backend: GitHttpBackend,
        webhooks: WebhookSender,
    ) -> None:
        self._registry = registry
        self._verifier = verifier
        self._git = git_backend
        self._webhooks = webhooks
        self.pages = AppPages(registry, webhooks)
        # ``/_simulator/…`` (control.py), served only by a standalone simulator.
        self.control: Callable[[Request], Response] | None = None
        self.checks = ChecksApi(registry)
        self.statuses = StatusesApi(registry)
        # (path, method, handler called with the request, the Links and the path's groups)
        self._repository_routes: tuple[_Route, ...] = (
            (_CHECK_RUNS, "POST", self.checks.create),
            (_CHECK_RUN, "PATCH", self.checks.update),
            (_CHECK_RUN, "GET", self.checks.get),
            (_ANNOTATIONS, "GET", self.checks.annotations),
            (_REF_CHECK_RUNS, "GET", self.checks.list_for_ref),
            (_STATUSES, "POST", self.statuses.create),
            (_COMBINED_STATUS, "GET", self.statuses.combined),
        )

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        method = request.method
        path = environ.get("PATH_INFO") or "/"
        received = dict(request.headers.items())

        def recording_start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            code = int(status.split(None, 1)[0])
            self._registry.record_request(
                RequestRecord(method, path, environ.get("QUERY_STRING", ""), received, code)
            )
            logger.debug("%s %s -> %s", method, path, code)
            return start_response(status, headers, exc_info)

        failure = self._registry.take_failure(method, path)
        if failure is not None:
            if failure.body is None:
                response = error_response(failure.status, None, failure.headers)
            else:
                response = json_response(failure.status, failure.body, failure.headers)
            return response(environ, recording_start_response)
        try:
            return self._route(request, path, environ, recording_start_response)
        except Exception:
            logger.exception("simulator failed handling %s %s", method, path)
            return error_response(500, "Server Error")(environ, recording_start_response)

    def _route(
        self,
        request: Request,
        path: str,
        environ: dict[str, Any],
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        if self.control is not None and path.startswith(CONTROL_PREFIX):
            return self.control(request)(environ, start_response)
        match = _ACCESS_TOKENS.match(path)
        if match and request.method == "POST":
            installation_id = int(match["id"])
            response = mint_access_token(request, installation_id, self._registry, self._verifier)
            return response(environ, start_response)
        pages = self._route_app_pages(request, path)
        if pages is not None:
            return pages(environ, start_response)
        hooks = self._route_hooks(request, path)
        if hooks is not None:
            return hooks(environ, start_response)
        repo_api = self._route_repository_api(request, path)
        if repo_api is not None:
            return repo_api(environ, start_response)
        match = _GIT.match(path)
        if match and request.method in ("GET", "POST"):
            full_name = f"{match['owner']}/{match['name']}"
            return self._git(environ, start_response, full_name, match["service"])
        return not_found()(environ, start_response)

    def _route_repository_api(self, request: Request, path: str) -> Response | None:
        """The Checks and commit statuses endpoints under ``/repos/{owner}/{repo}``."""
        if not path.startswith(("/repos/", API_PREFIX + "/repos/")):
            return None
        html_url = request.host_url.rstrip("/")
        links = Links(html_url=html_url, api_url=html_url + API_PREFIX)
        for pattern, method, handle in self._repository_routes:
            match = pattern.match(path)
            if match and request.method == method:
                return handle(request, links, **match.groupdict())
        return None

    def _route_app_pages(self, request: Request, path: str) -> Response | None:
        """The manifest flow's pages and conversion, the App and install pages."""
        method = request.method
        match = _CONVERSIONS.match(path)
        if match and method == "POST":
            return self.pages.convert(request, match["code"])
        match = _NEW_APP.match(path)
        if match and method in ("GET", "POST"):
            return self.pages.new_app(request, match["org"])
        match = _CREATE_APP.match(path)
        if match and method == "POST":
            return self.pages.create_app(request, match["org"])
        match = _APP_PAGE.match(path)
        if match and method == "GET":
            return self.pages.app_page(request, match["slug"])
        match = _INSTALL_PAGE.match(path)
        if match and method == "GET":
            return self.pages.install_page(request, match["slug"])
        if match and method == "POST":
            return self.pages.install(request, match["slug"])
        return None

    def _route_hooks(self, request: Request, path: str) -> Response | None:
        registry, verifier = self._registry, self._verifier
        if request.method == "GET" and _DELIVERIES.match(path):
            return list_deliveries(request, registry, verifier)
        match = _DELIVERY.match(path)
        if match and request.method == "GET":
            return get_delivery(request, int(match["id"]), registry, verifier)
        match = _ATTEMPTS.match(path)
        if match and request.method == "POST":
            return redeliver(request, int(match["id"]), registry, verifier, self._webhooks)
        return None
