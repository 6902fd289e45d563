"""The locks agree with pyproject.toml, and this environment has exactly the locked versions.

pyproject.toml states ranges; requirements.lock (runtime, what Heroku installs through
requirements.txt) and requirements-test.lock (runtime and test) pin one version of everything.
`./run lock` rewrites both; `./run` installs from them. No network: files and installed metadata.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
RELOCK = "pyproject.toml and the locks disagree: run ./run lock"


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def runtime_requirements() -> list[Requirement]:
    return [Requirement(line) for line in project()["dependencies"]]


def extra_test_requirements() -> list[Requirement]:
    return [Requirement(line) for line in project()["optional-dependencies"]["test"]]


def pins(lock: str) -> dict[NormalizedName, list[Requirement]]:
    """Each package's lines in ``lock``: ``name==version`` with the marker, if any."""
    found: dict[NormalizedName, list[Requirement]] = {}
    for line in (ROOT / lock).read_text().splitlines():
        if not line.strip() or line[0] in "# \t-":  # comments, "# via" notes, options
            continue
        requirement = Requirement(line)
        found.setdefault(canonicalize_name(requirement.name), []).append(requirement)
    return found


def pinned_version(requirement: Requirement) -> Version:
    (specifier,) = requirement.specifier
    assert specifier.operator == "==", f"{requirement} is not pinned: {RELOCK}"
    return Version(specifier.version)


def the_pin(lock: str, name: str) -> Requirement:
    lines = pins(lock).get(canonicalize_name(name), [])
    assert len(lines) == 1, f"{name} has {len(lines)} lines in {lock}, not one: {RELOCK}"
    return lines[0]


def assert_pinned_within_range(lock: str, wanted: Requirement) -> None:
    pin = the_pin(lock, wanted.name)
    version = pinned_version(pin)
    assert wanted.specifier.contains(version, prereleases=True), (
        f"{lock} pins {pin.name}=={version}, outside pyproject's {wanted}: {RELOCK}"
    )
    assert str(pin.marker or "") == str(wanted.marker or ""), (
        f"{lock} has {pin}, pyproject.toml {wanted}: the markers differ: {RELOCK}"
    )


def test_heroku_installs_the_runtime_lock_and_the_project():
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    assert [line for line in lines if line.strip() and not line.startswith("#")] == [
        "-r requirements.lock",
        ".",
    ]


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-test.lock"])
def test_each_lock_pins_exactly_and_says_how_it_is_made(lock: str):
    text = (ROOT / lock).read_text()
    assert "./run lock" in text.split("\n", 3)[1], f"{lock}'s header should name ./run lock"
    for lines in pins(lock).values():
        for line in lines:
            pinned_version(line)


def test_every_runtime_dependency_is_locked_once_within_its_range():
    for wanted in runtime_requirements():
        assert_pinned_within_range("requirements.lock", wanted)


def test_the_test_lock_keeps_the_runtime_pins_and_locks_the_test_extra():
    test_lock = pins("requirements-test.lock")
    for name, lines in pins("requirements.lock").items():
        assert [str(line) for line in test_lock.get(name, [])] == [str(line) for line in lines], (
            f"requirements-test.lock and requirements.lock pin {name} differently: {RELOCK}"
        )
    for wanted in extra_test_requirements():
        assert_pinned_within_range("requirements-test.lock", wanted)


def test_rq_is_capped_at_the_minor_version_the_tests_run_with():
    # webapp/accept.py writes RQ's job hash itself: an RQ the tests never ran must not install.
    (wanted,) = [r for r in runtime_requirements() if canonicalize_name(r.name) == "rq"]
    locked = pinned_version(the_pin("requirements.lock", "rq"))
    next_minor = Version(f"{locked.major}.{locked.minor + 1}.0")
    assert locked in wanted.specifier
    assert not wanted.specifier.contains(next_minor, prereleases=True), (
        f"pyproject admits rq {next_minor}: cap it below the tested {locked.major}.{locked.minor}"
    )


def installed_closure(requirements: list[Requirement]) -> dict[NormalizedName, str]:
    """Every package ``requirements`` need here, with extras and markers, and its installed
    version, from the installed packages' own metadata."""
    found: dict[NormalizedName, str] = {}
    walked: set[tuple[NormalizedName, str]] = set()
    todo = [(requirement, "") for requirement in requirements]
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{name} is not installed: ./run reinstalls from the locks")
        found[name] = distribution.version
        for each in {""} | {canonicalize_name(e) for e in requirement.extras}:
            if (name, each) not in walked:
                walked.add((name, each))
                todo += [(Requirement(line), each) for line in distribution.requires or []]
    return found


def test_this_environment_has_exactly_the_locked_versions():
    locked = pins("requirements-test.lock")
    needed = installed_closure(runtime_requirements() + extra_test_requirements())
    assert "rq" in needed
    assert "pytest" in needed
    for name, installed in sorted(needed.items()):
        lines = [line for line in locked.get(name, []) if not line.marker or line.marker.evaluate()]
        assert len(lines) == 1, f"{name} is needed here but not locked for here: {RELOCK}"
        assert Version(installed) == pinned_version(lines[0]), (
            f"{name} {installed} is installed, the lock says {lines[0]}: run ./run to reinstall"
        )
