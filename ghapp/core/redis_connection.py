"""One way to open Redis from a URL, with timeouts that let callers fail fast and recover."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import redis


def connect(url: str, *, socket_timeout: float = 5.0) -> redis.Redis:
    """A client for ``url``; ``rediss://`` without an explicit choice accepts self-signed
    certificates, as Heroku's Redis requires."""
    options: dict[str, object] = {
        "socket_connect_timeout": 2.0,
        "socket_timeout": socket_timeout,
        "health_check_interval": 30,
        "retry_on_timeout": False,
    }
    parts = urlsplit(url)
    if parts.scheme == "rediss" and "ssl_cert_reqs" not in parse_qs(parts.query):
        options["ssl_cert_reqs"] = None
    return redis.Redis.from_url(url, **options)


def describe(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def round_trip(client: redis.Redis, *commands: tuple[object, ...]) -> list[object]:
    """Send ``commands`` in one write and read their replies, an error reply as its exception.

    What a non-transactional pipeline does, for a hot path where redis-py's ``Pipeline``
    costs more than the commands: redis-py's own connection, health check and retry policy.
    """
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        return connection.retry.call_with_retry(
            lambda: _exchange(connection, commands), lambda _error: connection.disconnect()
        )
    except BaseException:
        connection.disconnect()  # replies may be left unread: never reuse the connection
        raise
    finally:
        pool.release(connection)


def _exchange(
    connection: redis.connection.AbstractConnection, commands: tuple[tuple[object, ...], ...]
) -> list[object]:
    # One buffer, one send: redis-py sends a large value apart from its command, a syscall more.
    connection.send_packed_command([b"".join(connection.pack_commands(commands))])
    replies: list[object] = []
    for _ in commands:
        try:
            replies.append(connection.read_response())
        except redis.ResponseError as error:  # read in full: the next reply follows
            replies.append(error)
    return replies
