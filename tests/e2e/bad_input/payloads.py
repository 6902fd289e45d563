"""Serialising a push payload, and damaging it in place."""

from __future__ import annotations

import json
import uuid
from typing import Any


def dumps(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def set_path(payload: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set the value at ``path``, making the objects on the way if an earlier damage removed
    them (each damage is enough for a refusal, whichever order they come in)."""
    for key in path[:-1]:
        if not isinstance(payload.get(key), dict):
            payload[key] = {}
        payload = payload[key]
    payload[path[-1]] = value


def del_path(payload: dict[str, Any], path: tuple[str, ...]) -> None:
    for key in path[:-1]:
        if not isinstance(payload.get(key), dict):
            return  # already gone or not an object: refused for that already
        payload = payload[key]
    payload.pop(path[-1], None)


def with_raw_value(payload: dict[str, Any], path: tuple[str, ...], raw_value: bytes) -> bytes:
    """``payload`` serialised with the value at ``path`` replaced by the literal ``raw_value``."""
    marker = f"@@raw-{uuid.uuid4().hex}@@"
    copy = json.loads(json.dumps(payload))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = marker
    return dumps(copy).replace(json.dumps(marker).encode(), raw_value)
