"""A PROCESSOR the end-to-end tests configure: it records what it was given, to be checked."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any


def record(context: Any) -> dict[str, Any]:
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=context.path, capture_output=True, text=True, check=True
    ).stdout.strip()
    seen = {
        "path": str(context.path),
        "repository": context.repository,
        "ref": context.ref,
        "sha": context.sha,
        "delivery": context.delivery,
        "head": head,
        "after_in_payload": context.payload.get("after"),
        "files": sorted(p.name for p in Path(context.path).iterdir() if p.name != ".git"),
        "mode": oct(os.stat(context.path).st_mode & 0o777),
    }
    out = Path(os.environ["GHAPP_TEST_RECORDS"]) / f"{context.delivery}.json"
    with open(out, "a") as handle:  # appended: a second run of one delivery would show
        handle.write(json.dumps(seen) + "\n")
    return {"head": head}
