"""Settings: defaults, the private key in every accepted form, clear errors, nothing leaked."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ghapp.core.settings import ConfigError, check_private_key, environment, load_settings

SECRET_MARK = "SECRETJUNK1234"


@pytest.fixture(scope="module")
def pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def test_defaults() -> None:
    settings = load_settings({})
    assert settings.api_url == "https://api.github.com"
    assert settings.github_url == "https://github.com"
    assert settings.port == 3000
    assert settings.job_timeout == 600
    assert settings.app_id is None
    assert settings.private_key is None
    assert settings.webhook_secrets == ()
    assert settings.redis_url is None
    assert settings.push_branches == ()


def test_values_are_read_and_trimmed() -> None:
    settings = load_settings(
        {
            "GITHUB_APP_ID": " 4242 ",
            "REDIS_URL": "redis://localhost:6379/0",
            "PORT": "8080",
            "JOB_TIMEOUT": "30",
            "PUSH_BRANCHES": "main, release/*",
            "GITHUB_URL": "https://ghe.example.com/",
            "GITHUB_API_URL": "https://ghe.example.com/api/v3/",
        }
    )
    assert settings.app_id == "4242"
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.port == 8080
    assert settings.job_timeout == 30
    assert settings.push_branches == ("main", "release/*")
    assert settings.github_url == "https://ghe.example.com"
    assert settings.api_url == "https://ghe.example.com/api/v3"


def test_comma_separated_webhook_secrets_are_all_kept() -> None:
    settings = load_settings({"GITHUB_WEBHOOK_SECRET": "old-secret, new-secret,,"})
    assert settings.webhook_secrets == (b"old-secret", b"new-secret")


def _forms(pem: bytes, tmp_path: Path) -> dict[str, dict[str, str]]:
    text = pem.decode()
    key_file = tmp_path / "app.pem"
    key_file.write_bytes(pem)
    b64 = base64.b64encode(pem).decode()
    return {
        "pem": {"GITHUB_PRIVATE_KEY": text},
        "escaped": {"GITHUB_PRIVATE_KEY": text.strip().replace("\n", "\\n")},
        "quoted-escaped": {"GITHUB_PRIVATE_KEY": '"' + text.strip().replace("\n", "\\n") + '"'},
        "base64": {"GITHUB_PRIVATE_KEY": b64},
        "base64-wrapped": {"GITHUB_PRIVATE_KEY": "\n".join(textwrap.wrap(b64, 76))},
        "path": {"GITHUB_PRIVATE_KEY_PATH": str(key_file)},
    }


@pytest.mark.parametrize(
    "form", ["pem", "escaped", "quoted-escaped", "base64", "base64-wrapped", "path"]
)
def test_private_key_in_every_form_gives_the_same_usable_key(
    pem: bytes, tmp_path: Path, form: str
) -> None:
    env = _forms(pem, tmp_path)[form]
    settings = load_settings(env)
    assert settings.private_key == pem
    check_private_key(settings.private_key)


def test_private_key_path_is_recorded(pem: bytes, tmp_path: Path) -> None:
    path = tmp_path / "app.pem"
    path.write_bytes(pem)
    assert load_settings({"GITHUB_PRIVATE_KEY_PATH": str(path)}).private_key_path == str(path)


def test_unreadable_private_key_path_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="GITHUB_PRIVATE_KEY_PATH"):
        load_settings({"GITHUB_PRIVATE_KEY_PATH": str(tmp_path / "missing.pem")})


@pytest.mark.parametrize(
    "raw",
    [
        SECRET_MARK,
        base64.b64encode(SECRET_MARK.encode() * 3).decode(),
        base64.b64encode(b"\xff\xfe" + SECRET_MARK.encode()).decode(),
    ],
)
def test_garbage_key_is_refused_without_echoing_it(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"GITHUB_PRIVATE_KEY": raw})
    assert SECRET_MARK not in str(info.value)
    assert raw not in str(info.value)


def test_pem_shaped_garbage_fails_the_key_check_without_echoing_it() -> None:
    kind = "RSA PRIVATE KEY"  # a PEM's shape around garbage, no key
    raw = f"-----BEGIN {kind}-----\\n{SECRET_MARK}\\n-----END {kind}-----"
    settings = load_settings({"GITHUB_PRIVATE_KEY": raw})
    assert settings.private_key is not None
    with pytest.raises(ConfigError) as info:
        check_private_key(settings.private_key)
    assert SECRET_MARK not in str(info.value)


def test_non_rsa_key_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ConfigError, match="RSA"):
        check_private_key(pem)


def test_web_requires_the_webhook_secret() -> None:
    with pytest.raises(ConfigError, match="GITHUB_WEBHOOK_SECRET"):
        load_settings({}).require_web()
    load_settings({"GITHUB_WEBHOOK_SECRET": "x"}).require_web()


def test_worker_requires_app_id_and_key(pem: bytes) -> None:
    with pytest.raises(ConfigError, match="GITHUB_APP_ID"):
        load_settings({"GITHUB_PRIVATE_KEY": pem.decode()}).require_worker()
    with pytest.raises(ConfigError, match="GITHUB_PRIVATE_KEY"):
        load_settings({"GITHUB_APP_ID": "1"}).require_worker()
    load_settings({"GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": pem.decode()}).require_worker()


def test_redis_is_required_by_name() -> None:
    with pytest.raises(ConfigError, match="REDIS_URL"):
        load_settings({"REDIS_URL": "  "}).require_redis()
    load_settings({"REDIS_URL": "redis://localhost"}).require_redis()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "abc"),
        ("PORT", "0"),
        ("PORT", "-1"),
        ("PORT", "80.5"),
        ("JOB_TIMEOUT", "ten"),
        ("JOB_TIMEOUT", "0"),
        ("WORKERS", "0"),
    ],
)
def test_bad_numbers_are_config_errors_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GITHUB_URL", "github.com"),
        ("GITHUB_URL", "ftp://github.com"),
        ("GITHUB_URL", "https://"),
        ("GITHUB_API_URL", "api.github.com"),
    ],
)
def test_bad_urls_are_config_errors_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})


def test_repr_shows_no_key_or_secrets(pem: bytes) -> None:
    settings = load_settings(
        {
            "GITHUB_APP_ID": "4242",
            "GITHUB_PRIVATE_KEY": pem.decode(),
            "GITHUB_WEBHOOK_SECRET": "hook-secret-value,second-hook-secret",
            "TOKEN_CACHE_KEY": "cache-key-material",
        }
    )
    text = repr(settings)
    assert "4242" in text
    for secret in ("hook-secret-value", "second-hook-secret", "cache-key-material", "PRIVATE KEY"):
        assert secret not in text
    body_line = pem.decode().splitlines()[1]
    assert body_line not in text


def test_environment_reads_dotenv_and_the_process_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "GHAPP_TEST_FROM_FILE=file-value\nGHAPP_TEST_BOTH=file-value\nGITHUB_APP_ID=11\n"
    )
    monkeypatch.delenv("GHAPP_TEST_FROM_FILE", raising=False)
    monkeypatch.setenv("GHAPP_TEST_BOTH", "process-value")
    monkeypatch.setenv("GITHUB_APP_ID", "22")
    merged = environment(dotenv)
    assert merged["GHAPP_TEST_FROM_FILE"] == "file-value"
    assert merged["GHAPP_TEST_BOTH"] == "process-value"
    assert load_settings(merged).app_id == "22"


def test_environment_without_dotenv_file_is_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GHAPP_TEST_ONLY_PROCESS", "yes")
    merged = environment(tmp_path / "absent.env")
    assert merged["GHAPP_TEST_ONLY_PROCESS"] == "yes"


def test_sandbox_settings_and_their_one_line_refusals() -> None:
    settings = load_settings({})
    assert (settings.sandbox, settings.sandbox_network, settings.process_env) == ("auto", True, ())
    assert settings.checkout_max_files == 100_000
    settings = load_settings(
        {"SANDBOX": "none", "SANDBOX_NETWORK": "off", "PROCESS_ENV": "NPM_TOKEN, CI"}
    )
    assert (settings.sandbox, settings.sandbox_network) == ("none", False)
    assert settings.process_env == ("NPM_TOKEN", "CI")
    with pytest.raises(ConfigError, match="SANDBOX='docker' is not one of auto, bwrap, none"):
        load_settings({"SANDBOX": "docker"})
    for secret in ("GITHUB_PRIVATE_KEY", "REDIS_URL", "HEROKU_REDIS_RED_URL"):
        with pytest.raises(ConfigError, match=f"PROCESS_ENV names {secret}"):
            load_settings({"PROCESS_ENV": f"CI,{secret}"})


def test_a_port_out_of_range_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^PORT=99999 is too large: it must be at most 65535$"):
        load_settings({"PORT": "99999"})
    assert load_settings({"PORT": "65535"}).port == 65535


@pytest.mark.parametrize(
    "raw", ["main,feature/*", "main feature/*", " main ,  feature/* ", "main\tfeature/*"]
)
def test_push_branches_are_separated_by_commas_or_white_space(raw) -> None:
    assert load_settings({"PUSH_BRANCHES": raw}).push_branches == ("main", "feature/*")


def test_report_settings_default_to_a_check_run_named_ghapp_without_links() -> None:
    settings = load_settings({})
    assert (settings.report, settings.check_name, settings.public_url) == ("checks", "ghapp", None)
    settings = load_settings(
        {"REPORT": "Statuses", "CHECK_NAME": " lint ", "PUBLIC_URL": "https://ci.example.com/"}
    )
    assert (settings.report, settings.check_name, settings.public_url) == (
        "statuses",
        "lint",
        "https://ci.example.com",
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REPORT": "comments"}, "REPORT='comments' is not one of checks, statuses, none"),
        ({"CHECK_NAME": "x" * 101}, "CHECK_NAME is longer than 100"),
        ({"CHECK_NAME": "a\tb"}, "control character"),
        ({"PUBLIC_URL": "ghapp.example.com"}, "PUBLIC_URL='ghapp.example.com' is not an http"),
        ({"PUBLIC_URL": "https://x.example.com/?a=1"}, "is not an http(s) base URL"),
    ],
)
def test_report_settings_are_refused_in_one_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_github_enterprise_servers_api_follows_its_url_unless_set() -> None:
    assert load_settings({}).api_url == "https://api.github.com"
    ghes = load_settings({"GITHUB_URL": "https://ghe.example.com/"})
    assert (ghes.github_url, ghes.api_url) == (
        "https://ghe.example.com",
        "https://ghe.example.com/api/v3",
    )
    both = load_settings({"GITHUB_URL": "https://ghe.example.com", "GITHUB_API_URL": "https://a.x"})
    assert both.api_url == "https://a.x"
