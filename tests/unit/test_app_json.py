"""app.json (the Heroku Button) against Heroku's app.json schema, the Procfile and the settings
the code reads: a setting renamed in the code and not in app.json fails here."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from ghapp.core.process_secrets import is_secret
from ghapp.core.settings import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
APP = json.loads((ROOT / "app.json").read_text())

# https://devcenter.heroku.com/articles/app-json-schema
TOP_LEVEL = {
    "name", "description", "keywords", "website", "repository", "logo", "success_url",
    "scripts", "env", "formation", "image", "addons", "buildpacks", "environments", "stack",
}  # fmt: skip
ENV_KEYS = {"description", "value", "required", "generator"}
ADDON_KEYS = {"plan", "as", "options"}
DYNO_SIZES = {
    "eco", "basic", "standard-1x", "standard-2x", "performance-m", "performance-l",
    "performance-l-ram", "performance-xl", "performance-2xl",
}  # fmt: skip
# What the worker and the web process refuse to start without (Settings.require_*).
REQUIRED = {"GITHUB_APP_ID", "GITHUB_PRIVATE_KEY", "GITHUB_WEBHOOK_SECRET"}
# Set by Heroku itself (the router, the Redis add-on): never asked for.
SET_BY_HEROKU = {"PORT", "REDIS_URL"}


class Recording(Mapping[str, str]):
    """An environment that notes every name asked of it."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self.values = dict(values or {})
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        return self.values[name]

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self.asked.add(name)
        return name in self.values

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def require_both(settings: Settings) -> None:
    settings.require_web()
    settings.require_worker()


def settings_read() -> set[str]:
    env = Recording()
    load_settings(env)
    return env.asked


def test_only_the_fields_herokus_schema_defines() -> None:
    assert set(APP) <= TOP_LEVEL
    assert isinstance(APP["name"], str)
    assert 3 <= len(APP["name"]) <= 30
    assert isinstance(APP["description"], str)
    assert len(APP["description"]) <= 140
    assert all(isinstance(k, str) for k in APP.get("keywords", []))
    assert APP["success_url"].startswith("/")


def test_env_entries() -> None:
    for name, entry in APP["env"].items():
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name), name
        assert isinstance(entry, dict), name
        assert set(entry) <= ENV_KEYS, name
        assert isinstance(entry["description"], str), name
        assert entry["description"], name
        assert isinstance(entry.get("required", True), bool), name
        assert isinstance(entry.get("value", ""), str), name
        assert entry.get("generator", "secret") == "secret", name
        # A secret is generated or typed in, never shipped in the repository.
        assert not (is_secret(name) and "value" in entry), name
        assert "required" in entry, f"{name}: say whether it is required"


def test_every_env_name_is_a_setting_the_code_reads() -> None:
    read = settings_read()
    assert "GITHUB_APP_ID" in read  # the recording works
    unknown = set(APP["env"]) - read
    assert not unknown, f"app.json sets what load_settings does not read: {sorted(unknown)}"
    assert not set(APP["env"]) & SET_BY_HEROKU


def test_the_required_ones_are_what_the_processes_require(app_key: tuple[bytes, bytes]) -> None:
    required = {name for name, entry in APP["env"].items() if entry.get("required", True)}
    assert required == REQUIRED
    assert APP["env"]["GITHUB_WEBHOOK_SECRET"]["generator"] == "secret"
    for name in ("GITHUB_APP_ID", "GITHUB_PRIVATE_KEY"):
        assert "value" not in APP["env"][name]
        assert "generator" not in APP["env"][name]
    pem = app_key[0].decode()  # made for this run
    values = {"GITHUB_APP_ID": "12345", "GITHUB_PRIVATE_KEY": pem, "GITHUB_WEBHOOK_SECRET": "s"}
    settings = load_settings(values)
    settings.require_web()
    settings.require_worker()
    for name in REQUIRED:
        missing = load_settings({k: v for k, v in values.items() if k != name})
        with pytest.raises(ConfigError, match=name):
            require_both(missing)


@pytest.mark.parametrize(("name", "entry"), [(n, e) for n, e in APP["env"].items() if "value" in e])
def test_a_shipped_value_is_valid_and_the_codes_default(name: str, entry: dict[str, Any]):
    assert load_settings({name: entry["value"]}) == load_settings({})


def test_public_url_and_process_command_are_offered() -> None:
    assert "herokuapp.com" in APP["env"]["PUBLIC_URL"]["description"]
    assert "PROCESS_COMMAND" in APP["env"]


def test_formation_matches_the_procfile() -> None:
    procfile = (ROOT / "Procfile").read_text().splitlines()
    types = {line.split(":", 1)[0].strip() for line in procfile if line.strip()}
    assert set(APP["formation"]) == types == {"web", "worker"}
    for process, dyno in APP["formation"].items():
        assert set(dyno) <= {"quantity", "size"}, process
        assert dyno["quantity"] == 1, process
        assert dyno["size"] in DYNO_SIZES, process


def test_redis_addon_and_python_buildpack() -> None:
    plans = []
    for addon in APP["addons"]:
        if isinstance(addon, str):
            plans.append(addon)
        else:
            assert set(addon) <= ADDON_KEYS
            plans.append(addon["plan"])
            # The attachment's name makes the variable: REDIS -> REDIS_URL, what ghapp reads.
            assert addon.get("as", "REDIS") == "REDIS"
    assert [p for p in plans if p.split(":")[0] == "heroku-redis"]
    assert all(set(b) == {"url"} for b in APP["buildpacks"])
    assert [b["url"] for b in APP["buildpacks"]] == ["heroku/python"]
