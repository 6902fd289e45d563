"""Where the installation token may go (clone URL checks, a pipe to git's credential helper),
git's hermetic environment, and the checkout's limits."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from worker.checkout import (
    CheckoutRefused,
    Limits,
    check_clone_url,
    git_environment,
    origin,
    run_limited,
)
from worker.failures import Permanent

TOKEN = "ghs_SuperSecretInstallationToken123"
USER = "x-access-token"  # the user name GitHub expects with an installation token
GITHUB = "https://github.com"
LIMITS = Limits(max_bytes=10**9, max_files=10**6, timeout=30)


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


def test_git_environment_holds_no_credential_only_a_helper_scoped_to_githubs_origin() -> None:
    env = git_environment(GITHUB, {"PATH": "bin-dir"}, home="/h", credential_fd=9)
    config = _config(env)
    assert config["credential.helper"] == ""  # any other helper forgotten
    helper = config.pop("credential.https://github.com.helper")
    assert "/dev/fd/9" in helper
    assert helper.startswith("!")
    assert not any("extraheader" in key.lower() for key in config)
    assert not any(
        key.startswith("credential.") and key.endswith(".helper") and value
        for key, value in config.items()
    )


def test_a_non_default_port_is_part_of_the_helpers_scope() -> None:
    config = _config(git_environment("http://127.0.0.1:8080/", {}, home="/h", credential_fd=3))
    assert "credential.http://127.0.0.1:8080.helper" in config
    assert config["protocol.allow"] == "never"
    assert config["protocol.http.allow"] == "always"
    assert "protocol.https.allow" not in config


def test_without_a_pipe_git_gets_no_helper_at_all() -> None:
    config = _config(git_environment(GITHUB, {}, home="/h"))
    assert not [key for key in config if key.startswith("credential.") and config[key]]


def test_config_count_matches_the_entries() -> None:
    env = git_environment(GITHUB, {}, home="/h", credential_fd=5)
    keys = [k for k in env if k.startswith("GIT_CONFIG_KEY_")]
    values = [k for k in env if k.startswith("GIT_CONFIG_VALUE_")]
    assert int(env["GIT_CONFIG_COUNT"]) == len(keys) == len(values)


def test_git_is_hermetic_and_never_prompts() -> None:
    env = git_environment(GITHUB, {}, home="/private-home")
    config = _config(env)
    assert env["GIT_CONFIG_GLOBAL"] == "/dev/null"
    assert env["GIT_CONFIG_NOSYSTEM"] == "1"
    assert env["HOME"] == env["XDG_CONFIG_HOME"] == "/private-home"
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert config["core.hooksPath"] == "/dev/null"
    assert config["init.templateDir"] == ""
    assert config["http.followRedirects"] == "false"


def test_nothing_of_the_callers_environment_but_path_reaches_git() -> None:
    base = {
        "PATH": "bin-dir",
        "HOME": "home-dir",
        "GIT_TRACE": "1",
        "GIT_TRACE_CURL": "trace.out",
        "GIT_CURL_VERBOSE": "1",
        "GIT_ASKPASS": "askpass-helper",
        "GIT_SSL_NO_VERIFY": "1",
        "GIT_CONFIG_COUNT": "9",
        "GIT_CONFIG_KEY_8": "http.proxy",
        "GIT_CONFIG_VALUE_8": "http://proxy.evil",
        "GIT_CONFIG_PARAMETERS": "'http.sslverify'='false'",
        "GITHUB_PRIVATE_KEY": "-----BEGIN",
        "https_proxy": "http://proxy.evil",
        "LD_PRELOAD": "/tmp/evil.so",
    }
    env = git_environment(GITHUB, base, home="/h", credential_fd=4)
    assert env["PATH"] == "bin-dir"
    assert env["HOME"] == "/h"
    assert [name for name in base if name != "PATH" and env.get(name) == base[name]] == []
    assert "http://proxy.evil" not in env.values()
    assert "GIT_CONFIG_PARAMETERS" not in env
    assert "LD_PRELOAD" not in env


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_helper_answers_with_what_the_pipe_holds_for_githubs_origin_only(
    tmp_path: Path,
) -> None:
    """git itself asks the helper: the credential comes from the pipe, for GitHub's origin."""
    read_end, write_end = os.pipe()
    os.write(write_end, f"username={USER}\npassword={TOKEN}\n".encode())
    os.close(write_end)
    env = git_environment(
        GITHUB, {"PATH": os.environ.get("PATH", "")}, home=str(tmp_path), credential_fd=read_end
    )
    assert all(TOKEN not in value for value in env.values())

    def fill(url: str) -> str:
        result = subprocess.run(
            ["git", "credential", "fill"],
            input=f"url={url}\n\n",
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
            pass_fds=(read_end,),
        )
        return result.stdout

    try:
        assert fill("https://evil.example/o/r.git") == ""  # no helper there: nothing to say
        assert f"password={TOKEN}" in fill("https://github.com/o/r.git")
    finally:
        os.close(read_end)


def test_a_git_process_past_its_time_is_killed_and_refused(tmp_path) -> None:
    """CHECKOUT_TIMEOUT: a process that runs too long is stopped, and the job fails for good."""
    import subprocess
    import time

    from worker.checkout import CheckoutRefused, run_limited
    from worker.failures import Permanent

    slow = subprocess.Popen(["sleep", "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    started = time.monotonic()
    with pytest.raises(CheckoutRefused, match="CHECKOUT_TIMEOUT") as info:
        run_limited(slow, tmp_path, LIMITS, timeout=0.5, what="git fetch")
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
    limits = dataclasses.replace(LIMITS, max_bytes=1024 * 1024)
    with pytest.raises(CheckoutRefused, match="CHECKOUT_MAX_MB"):
        run_limited(quick, tmp_path, limits, timeout=10, what="git checkout")


def test_a_checkout_of_too_many_files_is_refused_whatever_their_size(tmp_path) -> None:
    """CHECKOUT_MAX_FILES: 300,000 empty files weigh nothing but must not pass."""
    many = subprocess.Popen(
        ["sh", "-c", f"cd {tmp_path} && seq 1 3000 | xargs touch"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with pytest.raises(CheckoutRefused, match="CHECKOUT_MAX_FILES"):
        run_limited(
            many, tmp_path, dataclasses.replace(LIMITS, max_files=1000), timeout=10, what="git"
        )
