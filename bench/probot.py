"""Probot 14, a reference of section 1: installed from the npm registry at bench time into a
cache directory outside the repository (bench/references/probot holds the app, its package.json
pinning Probot's exact version and the lock of everything under it; nothing of node_modules is
committed), and served as one Node process with the stage's App id, key and webhook secret."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from bench.stage import APP_ID, HERE, SECRET, Stage, started
from tests.support import Process, child_env

SOURCE = HERE / "references" / "probot"
APP = "server.js"
FILES = ("package.json", "package-lock.json")  # what the installation depends on
PATH = "/api/github/webhooks"  # Probot's default webhook path (WEBHOOK_PATH unset)
MIN_NODE = (20, 18, 1)  # Probot 14's engines: ^20.18.1 || >= 22
# Probot's own settings a caller's environment could hold: none of them reaches it but ours
# (REDIS_URL would have Probot throttle through Redis).
PROBOT_SETTINGS = (
    "APP_ID",
    "PRIVATE_KEY",
    "PRIVATE_KEY_PATH",
    "WEBHOOK_SECRET",
    "WEBHOOK_PATH",
    "WEBHOOK_PROXY_URL",
    "GHE_HOST",
    "GHE_PROTOCOL",
    "GH_ORG",
    "LOG_FORMAT",
    "LOG_LEVEL_IN_STRING",
    "LOG_MESSAGE_KEY",
    "REDIS_URL",
    "SENTRY_DSN",
)


class Unavailable(Exception):
    """Probot cannot be measured here: the reason, for the report."""


@dataclass
class Installed:
    directory: Path  # the cache directory: node_modules, and the app next to it
    version: str  # Probot's, as installed
    node: str  # node --version

    @property
    def label(self) -> str:
        return f"Probot {self.version} (Node {self.node})"


def pinned_version() -> str:
    return json.loads((SOURCE / "package.json").read_text())["dependencies"]["probot"]


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ghapp-bench"


def node_version() -> str:
    """``node --version``, if node and npm are on PATH and node is recent enough for Probot."""
    if not shutil.which("node") or not shutil.which("npm"):
        raise Unavailable("node and npm are needed on PATH (Node.js ≥ 20.18.1)")
    version = subprocess.run(
        ["node", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    found = tuple(int(n) for n in re.findall(r"\d+", version)[:3])
    if found < MIN_NODE or (found[0] == 21):
        raise Unavailable(f"Probot 14 needs Node.js ^20.18.1 or ≥ 22, found {version}")
    return version


def install(logs: Path) -> Installed:
    """Probot, installed once per package.json and lock in ~/.cache/ghapp-bench, the app
    copied next to it each time; npm's output in logs/npm-install.log."""
    node = node_version()
    version = pinned_version()
    digest = hashlib.sha256(b"".join((SOURCE / name).read_bytes() for name in FILES))
    directory = cache_root() / f"probot-{version}-{digest.hexdigest()[:12]}"
    if not (directory / "node_modules" / "probot" / "package.json").exists():
        directory.parent.mkdir(parents=True, exist_ok=True)
        partial = directory.with_name(directory.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        for name in FILES:
            shutil.copy2(SOURCE / name, partial / name)
        log = logs / "npm-install.log"
        with log.open("ab") as out:
            try:
                done = subprocess.run(
                    ["npm", "install", "--no-audit", "--no-fund"],
                    cwd=partial,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=600,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                shutil.rmtree(partial, ignore_errors=True)
                raise Unavailable("npm install of Probot took over 10 minutes") from None
        if done.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            last = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
            raise Unavailable(f"npm install of probot@{version} failed: {last[0]}")
        shutil.rmtree(directory, ignore_errors=True)
        partial.rename(directory)
    shutil.copy2(SOURCE / APP, directory / APP)
    package = directory / "node_modules" / "probot" / "package.json"
    return Installed(directory, json.loads(package.read_text())["version"], node)


def serve(stage: Stage, installed: Installed, port: int) -> AbstractContextManager[Process]:
    """Probot's app on 127.0.0.1:``port``, one Node process (its webhook at PATH), with the
    stage's App id, private key and webhook secret; its log is stage.logs/probot.log."""
    env = {k: v for k, v in child_env({}).items() if k not in PROBOT_SETTINGS}
    env.update(
        APP_ID=APP_ID,
        PRIVATE_KEY=stage.private_key.decode(),
        WEBHOOK_SECRET=SECRET,
        HOST="127.0.0.1",
        PORT=str(port),
        LOG_LEVEL="warn",
        NODE_ENV="production",
    )
    return started(stage, "probot", ["node", APP], env, installed.directory)
