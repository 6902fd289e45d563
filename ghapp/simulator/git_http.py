"""Git smart HTTP (upload-pack only) served by running ``git http-backend`` as a CGI."""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from werkzeug.wsgi import get_input_stream

from ghapp.simulator import installation_auth
from ghapp.simulator.models import Repository
from ghapp.simulator.registry import Registry

logger = logging.getLogger(__name__)

TOKEN_USERNAME = "x-access-token"
UPLOAD_PACK = "git-upload-pack"
StartResponse = Callable[..., Any]


class GitHttpBackend:
    """Answers ``/{owner}/{repo}.git/info/refs`` and ``.../git-upload-pack`` for one root."""

    def __init__(self, registry: Registry, root: Path, env: Callable[[], dict[str, str]]) -> None:
        self._registry = registry
        self._root = root
        self._env = env

    def __call__(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        full_name: str,
        service_path: str,
    ) -> Iterable[bytes]:
        repo = self._registry.repository(full_name)
        if repo is None:
            return _plain(start_response, "404 Not Found", "Repository not found.\n")
        if not self._is_upload_pack(environ, service_path):
            return _plain(
                start_response, "403 Forbidden", "Write access to repository not granted.\n"
            )
        if not self._authorized(repo, environ.get("HTTP_AUTHORIZATION")):
            return _plain(
                start_response,
                "401 Unauthorized",
                "Invalid username or token.\n",
                [("WWW-Authenticate", 'Basic realm="GitHub"')],
            )
        return self._run_backend(environ, start_response, repo, service_path)

    @staticmethod
    def _is_upload_pack(environ: dict[str, Any], service_path: str) -> bool:
        if service_path == "info/refs":
            return environ.get("QUERY_STRING", "") == f"service={UPLOAD_PACK}"
        return service_path == UPLOAD_PACK and environ["REQUEST_METHOD"] == "POST"

    def _authorized(self, repo: Repository, authorization: str | None) -> bool:
        token = _basic_password(authorization)
        return installation_auth.grants(self._registry, token, repo, "contents", "read")

    def _run_backend(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        repo: Repository,
        service_path: str,
    ) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        body = get_input_stream(environ).read() if method == "POST" else b""
        env = self._env()
        env.update(
            GIT_PROJECT_ROOT=str(self._root),
            GIT_HTTP_EXPORT_ALL="1",
            PATH_INFO=f"/{repo.path.relative_to(self._root).as_posix()}/{service_path}",
            QUERY_STRING=environ.get("QUERY_STRING", ""),
            REQUEST_METHOD=method,
            CONTENT_TYPE=environ.get("CONTENT_TYPE", ""),
            CONTENT_LENGTH=str(len(body)),
            REMOTE_ADDR=environ.get("REMOTE_ADDR", "127.0.0.1"),
            REMOTE_USER=TOKEN_USERNAME,
        )
        for header, variable in (
            ("HTTP_GIT_PROTOCOL", "GIT_PROTOCOL"),
            ("HTTP_CONTENT_ENCODING", "HTTP_CONTENT_ENCODING"),
        ):
            if environ.get(header):
                env[variable] = environ[header]

        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed once the response is read
        proc = subprocess.Popen(
            ["git", "http-backend"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
        )
        feeder = threading.Thread(target=_feed, args=(proc.stdin, body), daemon=True)
        feeder.start()
        assert proc.stdout is not None
        status, headers = _read_cgi_headers(proc.stdout)
        if status is None:
            _finish(proc, feeder, stderr)
            return _plain(start_response, "502 Bad Gateway", "git http-backend failed.\n")
        start_response(status, headers)
        return _stream(proc, feeder, stderr)


def _basic_password(authorization: str | None) -> str | None:
    scheme, _, encoded = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    if not sep or username != TOKEN_USERNAME or not password:
        return None
    return password


def _feed(stdin: IO[bytes] | None, body: bytes) -> None:
    if stdin is None:
        return
    try:
        stdin.write(body)
    except BrokenPipeError:
        pass
    finally:
        with contextlib.suppress(BrokenPipeError):
            stdin.close()


def _read_cgi_headers(stdout: IO[bytes]) -> tuple[str | None, list[tuple[str, str]]]:
    """Parse CGI response headers; status None if the backend ended before finishing them."""
    status = "200 OK"
    headers: list[tuple[str, str]] = []
    while True:
        line = stdout.readline()
        if not line:
            return None, headers
        line = line.rstrip(b"\r\n")
        if not line:
            return status, headers
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "status":
            status = value.strip()
        else:
            headers.append((name.strip(), value.strip()))


def _stream(
    proc: subprocess.Popen[bytes], feeder: threading.Thread, stderr: IO[bytes]
) -> Iterator[bytes]:
    assert proc.stdout is not None
    try:
        while chunk := proc.stdout.read1(65536):  # type: ignore[attr-defined]
            yield chunk
    finally:
        _finish(proc, feeder, stderr)


def _finish(proc: subprocess.Popen[bytes], feeder: threading.Thread, stderr: IO[bytes]) -> None:
    if proc.stdout is not None:
        proc.stdout.close()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    feeder.join(timeout=5)
    stderr.seek(0)
    message = stderr.read().decode(errors="replace").strip()
    stderr.close()
    if proc.returncode or message:
        logger.debug("git http-backend exited %s: %s", proc.returncode, message)


def _plain(
    start_response: StartResponse,
    status: str,
    text: str,
    extra_headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    payload = text.encode()
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(payload))),
        *(extra_headers or []),
    ]
    start_response(status, headers)
    return [payload]
