"""Every setting ghapp reads, declared once with its default, parsed from one mapping.

Nothing here reads ``os.environ`` at import time: callers pass the environment in
(``load_settings(os.environ)``), so tests build settings from plain dicts.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_API_URL = "https://api.github.com"
DEFAULT_GITHUB_URL = "https://github.com"
DEFAULT_PORT = 3000
DEFAULT_JOB_TIMEOUT = 600
DEFAULT_WORKERS = 2
DEFAULT_CHECKOUT_MAX_MB = 2048
DEFAULT_CHECKOUT_TIMEOUT = 300
DEFAULT_REDELIVERY_INTERVAL = 300
DEFAULT_SHUTDOWN_GRACE = 25
DEFAULT_CHECKOUT_MAX_FILES = 100_000
SANDBOX_MODES = ("auto", "bwrap", "none")
# How a processed push is shown on GitHub: a check run, a commit status, or not at all.
REPORT_MODES = ("checks", "statuses", "none")
DEFAULT_CHECK_NAME = "ghapp"
DEFAULT_HISTORY_LIMIT = 10_000
DEFAULT_RESULT_TTL = 7 * 24 * 3600
DEFAULT_FAILURE_TTL = 30 * 24 * 3600
LOG_FORMATS = ("text", "json")
CHECK_NAME_MAX = 100  # characters; the name is shown in GitHub's checks list
QUEUE_NAME = "ghapp"


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it and says what to do."""


@dataclass(frozen=True)
class Settings:
    app_id: str | None = None
    # The PEM bytes; never shown by repr() so a logged Settings leaks nothing.
    private_key: bytes | None = field(default=None, repr=False)
    private_key_path: str | None = None
    webhook_secrets: tuple[bytes, ...] = field(default=(), repr=False)
    api_url: str = DEFAULT_API_URL
    github_url: str = DEFAULT_GITHUB_URL
    redis_url: str | None = field(default=None, repr=False)  # may hold a password
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    web_concurrency: int = 2
    log_level: str = "INFO"
    process_command: str | None = None
    processor: str | None = None
    push_branches: tuple[str, ...] = ()
    job_timeout: int = DEFAULT_JOB_TIMEOUT
    workers: int = DEFAULT_WORKERS
    queue_name: str = QUEUE_NAME
    token_cache_key: str | None = field(default=None, repr=False)
    supersede_pushes: bool = True
    checkout_max_bytes: int = DEFAULT_CHECKOUT_MAX_MB * 1024 * 1024
    checkout_timeout: int = DEFAULT_CHECKOUT_TIMEOUT
    redelivery_interval: int = DEFAULT_REDELIVERY_INTERVAL
    shutdown_grace: int = DEFAULT_SHUTDOWN_GRACE
    checkout_max_files: int = DEFAULT_CHECKOUT_MAX_FILES
    sandbox: str = "auto"
    sandbox_network: bool = True
    process_env: tuple[str, ...] = ()
    report: str = "checks"
    check_name: str = DEFAULT_CHECK_NAME
    public_url: str | None = None
    history_limit: int = DEFAULT_HISTORY_LIMIT
    result_ttl: int = DEFAULT_RESULT_TTL
    failure_ttl: int = DEFAULT_FAILURE_TTL
    # Basic auth of the dashboard (unset: no dashboard) and bearer token of /metrics.
    dashboard_password: str | None = field(default=None, repr=False)
    metrics_token: str | None = field(default=None, repr=False)
    log_format: str = "text"
    # A smee-style channel whose deliveries ``ghapp serve`` relays to its own webhook.
    webhook_proxy_url: str | None = None

    def require_web(self) -> None:
        """Raise ConfigError unless the web process has what it needs."""
        if not self.webhook_secrets:
            raise ConfigError(
                "GITHUB_WEBHOOK_SECRET is not set: set it to the webhook secret of your GitHub App"
            )

    def require_redis(self) -> None:
        if not self.redis_url:
            raise ConfigError(
                "REDIS_URL is not set: point it at your Redis (on Heroku, add a Redis add-on), "
                "or use `ghapp serve` to run an embedded one"
            )

    def require_worker(self) -> None:
        """Raise ConfigError unless the worker can authenticate as the App."""
        if not self.app_id:
            raise ConfigError("GITHUB_APP_ID is not set: set it to your GitHub App's ID")
        if not self.private_key:
            raise ConfigError(
                "GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH is not set: "
                "give the App's private key (.pem) in one of them"
            )


def _int(
    env: Mapping[str, str], name: str, default: int, minimum: int = 1, maximum: int | None = None
) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a whole number: set it to e.g. {default}"
        ) from None
    if value < minimum:
        raise ConfigError(f"{name}={value} is too small: it must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={value} is too large: it must be at most {maximum}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a yes/no value: set it to true or false")


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name, "").strip() or default
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}={raw!r} is not an http(s) URL: set it to e.g. {default}")
    return raw.rstrip("/")


def _optional_url(env: Mapping[str, str], name: str, example: str) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}={raw!r} is not an http(s) URL: set it to e.g. {example}")
    return raw


def _api_default(github_url: str) -> str:
    """GitHub Enterprise Server's API is under its host's ``/api/v3``: with GITHUB_URL set to
    one, GITHUB_API_URL follows it unless set too."""
    if github_url == DEFAULT_GITHUB_URL:
        return DEFAULT_API_URL
    return f"{github_url}/api/v3"


def _redis_url(env: Mapping[str, str]) -> str | None:
    raw = env.get("REDIS_URL", "").strip()
    if raw and urlsplit(raw).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            "REDIS_URL is not a redis://, rediss:// or unix:// URL: "
            "set it to e.g. redis://localhost:6379/0"
        )
    return raw or None


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _log_level(env: Mapping[str, str]) -> str:
    raw = env.get("LOG_LEVEL", "").strip().upper() or "INFO"
    if raw not in LOG_LEVELS:
        raise ConfigError(
            f"LOG_LEVEL={raw!r} is not a log level: use one of {', '.join(LOG_LEVELS)}"
        )
    return raw


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip().lower() or choices[0]
    if raw not in choices:
        raise ConfigError(f"{name}={raw!r} is not one of {', '.join(choices)}: set it to one")
    return raw


def _check_name(env: Mapping[str, str]) -> str:
    raw = env.get("CHECK_NAME", "").strip() or DEFAULT_CHECK_NAME
    if len(raw) > CHECK_NAME_MAX or any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise ConfigError(
            f"CHECK_NAME is longer than {CHECK_NAME_MAX} characters or holds a control "
            "character: set it to a short name such as 'ghapp' or 'lint'"
        )
    return raw


def _public_url(env: Mapping[str, str]) -> str | None:
    raw = env.get("PUBLIC_URL", "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ConfigError(
            f"PUBLIC_URL={raw!r} is not an http(s) base URL: set it to the address GitHub "
            "users reach this server at, e.g. https://ghapp.example.com"
        )
    return raw.rstrip("/")


def _process_env(env: Mapping[str, str]) -> tuple[str, ...]:
    """PROCESS_ENV: names of variables passed to the command; never one of ghapp's secrets."""
    from ghapp.core.process_secrets import is_secret

    names = _list(env.get("PROCESS_ENV"))
    for name in names:
        if is_secret(name) or name.upper().startswith("GITHUB_PRIVATE_KEY"):
            raise ConfigError(
                f"PROCESS_ENV names {name}, a secret of ghapp's: the processing command must "
                "not see it; remove it from PROCESS_ENV"
            )
    return names


def _words(raw: str | None) -> tuple[str, ...]:
    """Items separated by commas, white space or both (no branch name holds either)."""
    return tuple((raw or "").replace(",", " ").split())


def _list(raw: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (raw or "").split(",") if item.strip())


def parse_private_key(raw: str) -> bytes:
    """Accept a PEM as is, with literal ``\\n`` escapes (Heroku config vars), or base64-encoded.

    Only the shape is checked here; ``check_private_key`` loads it.
    """
    text = raw.strip().strip('"').strip("'")
    if "-----BEGIN" in text:
        return (text.replace("\\n", "\n").strip() + "\n").encode()
    try:
        decoded = base64.b64decode("".join(text.split()), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    if "-----BEGIN" in decoded:
        return (decoded.strip() + "\n").encode()
    raise ConfigError(
        "GITHUB_PRIVATE_KEY is not a PEM private key (nor base64 of one): "
        "paste the whole .pem file the App's settings page gave you"
    )


def check_private_key(pem: bytes) -> None:
    """Load the key once so a malformed one fails at start, with a message that shows none of it."""
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            "the App's private key could not be read: give the unencrypted .pem file "
            "that GitHub generated for the App"
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise ConfigError("the App's private key is not an RSA key: GitHub Apps use RSA .pem keys")


def private_key_file_warning(path: str | None) -> str | None:
    """A warning if the key file can be read by users other than its owner."""
    if not path:
        return None
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & 0o077:
        return (
            f"the App's private key file {path} is readable by other users "
            f"(mode {oct(mode & 0o777)}): chmod 600 {path}"
        )
    return None


def _private_key(env: Mapping[str, str]) -> tuple[bytes | None, str | None]:
    raw = env.get("GITHUB_PRIVATE_KEY", "")
    if raw.strip():
        return parse_private_key(raw), None
    path = env.get("GITHUB_PRIVATE_KEY_PATH", "").strip()
    if not path:
        return None, None
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(
            f"GITHUB_PRIVATE_KEY_PATH={path!r} cannot be read ({exc.strerror}): "
            "point it at the App's .pem file"
        ) from None
    return parse_private_key(text), path


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build Settings from an environment mapping; raise ConfigError on malformed values."""
    private_key, key_path = _private_key(env)
    github_url = _url(env, "GITHUB_URL", DEFAULT_GITHUB_URL)
    return Settings(
        app_id=env.get("GITHUB_APP_ID", "").strip() or None,
        private_key=private_key,
        private_key_path=key_path,
        webhook_secrets=tuple(s.encode() for s in _list(env.get("GITHUB_WEBHOOK_SECRET"))),
        api_url=_url(env, "GITHUB_API_URL", _api_default(github_url)),
        github_url=github_url,
        redis_url=_redis_url(env),
        host=env.get("HOST", "").strip() or "0.0.0.0",
        port=_int(env, "PORT", DEFAULT_PORT, maximum=65535),
        web_concurrency=_int(env, "WEB_CONCURRENCY", 2),
        log_level=_log_level(env),
        process_command=env.get("PROCESS_COMMAND", "").strip() or None,
        processor=env.get("PROCESSOR", "").strip() or None,
        push_branches=_words(env.get("PUSH_BRANCHES")),
        job_timeout=_int(env, "JOB_TIMEOUT", DEFAULT_JOB_TIMEOUT),
        workers=_int(env, "WORKERS", DEFAULT_WORKERS),
        token_cache_key=env.get("TOKEN_CACHE_KEY", "").strip() or None,
        supersede_pushes=_bool(env, "SUPERSEDE_PUSHES", True),
        checkout_max_bytes=_int(env, "CHECKOUT_MAX_MB", DEFAULT_CHECKOUT_MAX_MB) * 1024 * 1024,
        checkout_timeout=_int(env, "CHECKOUT_TIMEOUT", DEFAULT_CHECKOUT_TIMEOUT),
        redelivery_interval=_int(
            env, "REDELIVERY_INTERVAL", DEFAULT_REDELIVERY_INTERVAL, minimum=0
        ),
        shutdown_grace=_int(env, "SHUTDOWN_GRACE", DEFAULT_SHUTDOWN_GRACE),
        checkout_max_files=_int(env, "CHECKOUT_MAX_FILES", DEFAULT_CHECKOUT_MAX_FILES),
        sandbox=_choice(env, "SANDBOX", SANDBOX_MODES),
        sandbox_network=_bool(env, "SANDBOX_NETWORK", True),
        process_env=_process_env(env),
        report=_choice(env, "REPORT", REPORT_MODES),
        check_name=_check_name(env),
        public_url=_public_url(env),
        history_limit=_int(env, "HISTORY_LIMIT", DEFAULT_HISTORY_LIMIT, minimum=100),
        result_ttl=_int(env, "RESULT_TTL", DEFAULT_RESULT_TTL, minimum=60),
        failure_ttl=_int(env, "FAILURE_TTL", DEFAULT_FAILURE_TTL, minimum=60),
        dashboard_password=env.get("DASHBOARD_PASSWORD", "").strip() or None,
        metrics_token=env.get("METRICS_TOKEN", "").strip() or None,
        log_format=_choice(env, "LOG_FORMAT", LOG_FORMATS),
        webhook_proxy_url=_optional_url(env, "WEBHOOK_PROXY_URL", "https://smee.io/CHANNEL"),
    )


def environment(dotenv_path: str | os.PathLike[str] = ".env") -> dict[str, str]:
    """The process environment (with the secrets it withheld from its children) over the values of
    a ``.env`` file (the environment wins)."""
    from dotenv import dotenv_values

    from ghapp.core.process_secrets import withheld

    merged = {k: v for k, v in dotenv_values(dotenv_path).items() if v is not None}
    merged.update(os.environ)
    merged.update(withheld())  # what protect_process() took out of os.environ
    return merged
