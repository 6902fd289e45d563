"""Where the installation token may go: clone URL checks and git's environment."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from worker.checkout import CheckoutRefused, check_clone_url, git_environment, origin
from worker.failures import Permanent

TOKEN = "ghs_SuperSecretInstallationToken123"
USER = "x-access-token"  # the user name GitHub expects with an installation token
GITHUB = "https://github.com"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com", ("https", "github.com", 443)),
        ("https://github.com/o/r.git", ("https", "github.com", 443)),
        ("HTTPS://GitHub.COM/", ("https", "github.com", 443)),
        ("http://ghe.example", ("http", "ghe.example", 80)),
        ("http://127.0.0.1:8080/x", ("http", "127.0.0.1", 8080)),
        ("https://github.com:443", ("https", "github.com", 443)),
    ],
)
def test_origin_fills_in_default_ports(url: str, expected: tuple[str, str, int]) -> None:
    assert origin(url) == expected


@pytest.mark.parametrize(
    "url", ["ftp://github.com", "github.com", "https://", "https://x:99999", "https://x:abc"]
)
def test_origin_refuses_what_is_not_an_http_url(url: str) -> None:
    with pytest.raises(CheckoutRefused):
        origin(url)


@pytest.mark.parametrize(
    ("clone_url", "github_url"),
    [
        ("https://github.com/o/r.git", GITHUB),
        ("https://github.com:443/o/r.git", GITHUB),
        ("https://GITHUB.com/o/r.git", "https://github.com/"),
        ("http://127.0.0.1:8080/o/r.git", "http://127.0.0.1:8080"),
    ],
)
def test_clone_url_on_githubs_origin_is_accepted(clone_url: str, github_url: str) -> None:
    check_clone_url(clone_url, github_url)


@pytest.mark.parametrize(
    "clone_url",
    [
        "https://evil.example/o/r.git",
        "https://github.com.evil.example/o/r.git",
        "https://github.com:8443/o/r.git",
        "http://github.com/o/r.git",
        "ftp://github.com/o/r.git",
        f"https://{USER}:{TOKEN}@github.com/o/r.git",
        f"https://{TOKEN}@github.com/o/r.git",
        f"https://:{TOKEN}@github.com/o/r.git",
        f"https://{USER}:{TOKEN}@evil.example/o/r.git",
        f"https://github.com/o/r.git?access_token={TOKEN}",
        f"https://github.com/o/r.git#{TOKEN}",
    ],
)
def test_clone_url_elsewhere_is_refused_without_showing_credentials(clone_url: str) -> None:
    with pytest.raises(CheckoutRefused) as info:
        check_clone_url(clone_url, GITHUB)
    assert TOKEN not in str(info.value)
    assert isinstance(info.value, Permanent)  # not retried: it will never be allowed


def _config(env: dict[str, str]) -> dict[str, str]:
    count = int(env["GIT_CONFIG_COUNT"])
    return {env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"] for i in range(count)}


def test_token_is_only_an_extra_header_scoped_to_githubs_origin() -> None:
    env = git_environment(TOKEN, GITHUB, {"PATH": "bin-dir"})
    assert all(TOKEN not in key and TOKEN not in value for key, value in env.items())
    config = _config(env)
    header = config.pop("http.https://github.com/.extraHeader")
    scheme, _, credential = header.partition(" Basic ")
    assert scheme == "Authorization:"
    assert base64.b64decode(credential).decode() == f"x-access-token:{TOKEN}"
    assert not any("extraheader" in key.lower() for key in config)


def test_extra_header_keeps_a_non_default_port() -> None:
    config = _config(git_environment(TOKEN, "http://127.0.0.1:8080/", {}))
    assert "http.http://127.0.0.1:8080/.extraHeader" in config


def test_config_count_matches_the_entries() -> None:
    env = git_environment(TOKEN, GITHUB, {})
    keys = [k for k in env if k.startswith("GIT_CONFIG_KEY_")]
    values = [k for k in env if k.startswith("GIT_CONFIG_VALUE_")]
    assert int(env["GIT_CONFIG_COUNT"]) == len(keys) == len(values)


def test_git_never_prompts_or_uses_stored_credentials() -> None:
    env = git_environment(TOKEN, GITHUB, {})
    config = _config(env)
    assert config["credential.helper"] == ""
    assert config["http.followRedirects"] == "false"
    assert env["GIT_TERMINAL_PROMPT"] == "0"


def test_callers_tracing_askpass_and_config_variables_are_dropped() -> None:
    base = {
        "PATH": "bin-dir",
        "HOME": "home-dir",
        "GIT_TRACE": "1",
        "GIT_TRACE_PACKET": "1",
        "GIT_TRACE_CURL": "trace.out",
        "GIT_TRACE2_EVENT": "trace2.out",
        "GIT_CURL_VERBOSE": "1",
        "GIT_ASKPASS": "askpass-helper",
        "SSH_ASKPASS": "askpass-helper",
        "GIT_CONFIG_COUNT": "9",
        "GIT_CONFIG_KEY_8": "http.proxy",
        "GIT_CONFIG_VALUE_8": "http://proxy.evil",
        "GIT_CONFIG_PARAMETERS": "'http.sslverify'='false'",
    }
    env = git_environment(TOKEN, GITHUB, base)
    assert env["PATH"] == "bin-dir"
    assert env["HOME"] == "home-dir"
    for name in base:
        if name.startswith(("GIT_TRACE", "GIT_CURL", "GIT_ASKPASS", "SSH_ASKPASS")):
            assert name not in env
    assert "GIT_CONFIG_KEY_8" not in env
    assert "GIT_CONFIG_VALUE_8" not in env
    assert "GIT_CONFIG_PARAMETERS" not in env
    assert env["GIT_CONFIG_COUNT"] != "9"
    assert "http://proxy.evil" not in env.values()


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_sends_the_header_to_githubs_repositories_only(tmp_path: Path) -> None:
    env = git_environment(
        TOKEN, GITHUB, {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    )

    def header_for(url: str) -> str:
        result = subprocess.run(
            ["git", "config", "--get-urlmatch", "http.extraHeader", url],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return result.stdout.strip()

    assert header_for("https://github.com/o/r.git").startswith("Authorization: Basic ")
    assert header_for("https://evil.example/o/r.git") == ""
    assert header_for("http://github.com/o/r.git") == ""
    assert header_for("https://github.com:8443/o/r.git") == ""


def test_a_git_process_past_its_time_is_killed_and_refused(tmp_path) -> None:
    """CHECKOUT_TIMEOUT: a process that runs too long is stopped, and the job fails for good."""
    import subprocess
    import time

    from worker.checkout import CheckoutRefused, run_limited
    from worker.failures import Permanent

    slow = subprocess.Popen(["sleep", "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    started = time.monotonic()
    with pytest.raises(CheckoutRefused, match="CHECKOUT_TIMEOUT") as info:
        run_limited(slow, tmp_path, max_bytes=10**9, timeout=0.5, what="git fetch")
    assert time.monotonic() - started < 5
    assert slow.poll() is not None  # killed, not left running
    assert isinstance(info.value, Permanent)


def test_a_directory_grown_past_the_limit_is_refused_even_when_git_was_quick(tmp_path) -> None:
    """CHECKOUT_MAX_MB: checked while git runs and once more when it is done."""
    import subprocess

    from worker.checkout import CheckoutRefused, run_limited

    quick = subprocess.Popen(
        ["sh", "-c", f"head -c 3000000 /dev/zero > {tmp_path}/big"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with pytest.raises(CheckoutRefused, match="CHECKOUT_MAX_MB"):
        run_limited(quick, tmp_path, max_bytes=1024 * 1024, timeout=10, what="git checkout")
