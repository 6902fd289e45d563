"""Session fixtures: a Redis of our own (REDIS_URL's server in a claimed empty db, or the embedded
one), the App's key made at test time, and the GitHub simulator."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from ghapp.embedded_redis import EmbeddedRedis
from ghapp.simulator import GitHubSimulator, generate_app_key
from tests.support import claim_empty_db, with_db

APP_ID = "4242"
INSTALLATION_ID = 7


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    shared = os.environ.get("REDIS_URL")
    if shared:
        db = claim_empty_db(shared)
        url = with_db(shared, db)
        yield url
        redis.Redis.from_url(url).flushdb()  # empty when we claimed it: everything is ours
        return
    embedded = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield embedded.start()
    embedded.stop()


@pytest.fixture(scope="session")
def redis_client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture(scope="session")
def app_key() -> tuple[bytes, bytes]:
    """(private PEM, public PEM) of a key made for this run."""
    return generate_app_key()


@pytest.fixture(scope="session")
def simulator(
    app_key: tuple[bytes, bytes], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GitHubSimulator]:
    sim = GitHubSimulator(
        app_id=APP_ID, public_key_pem=app_key[1], root=tmp_path_factory.mktemp("github")
    )
    sim.start()
    sim.add_installation(INSTALLATION_ID, account="octo-org")
    yield sim
    sim.stop()


@pytest.fixture
def fresh_repo_name(request: pytest.FixtureRequest) -> str:
    """A repository name no other test uses, so counts and caches are this test's own."""
    import uuid

    stem = request.node.name[:40].replace("[", "-").replace("]", "")
    return f"octo-org/{stem}-{uuid.uuid4().hex[:6]}"


def pytest_report_header(config: pytest.Config) -> str:
    url = os.environ.get("REDIS_URL")
    return f"ghapp tests on Redis: {'REDIS_URL=' + url if url else 'embedded redis-server'}"
