"""The push payloads the acknowledgement sections post."""

from __future__ import annotations

import json
from pathlib import Path

from bench.stage import INSTALLATION, Stage


def make_payloads(stage: Stage) -> dict[str, Path]:
    """A realistic ~8 KB push (a few commits) and a large one (200 commits), written to files
    in the stage's home (wrk reads them): their files by name."""
    sim = stage.simulator
    sim.create_repository("bench/payloads", installation_id=INSTALLATION, files={"a": "a\n"})
    base = sim.branch_tip("bench/payloads")
    shas = []
    for n in range(200):
        files = {f"src/module_{n % 17}/file_{n}.py": f"print({n})\n"}
        shas.append(sim.commit("bench/payloads", files=files, message=f"Change {n}: " + "x" * 60))
    paths = {}
    for name, count in (("8 KB", 0), ("200 commits", 200)):
        if count == 0:
            for count in range(1, 200):
                size = len(json.dumps(sim.push_payload("bench/payloads", base, shas[count - 1])))
                if size >= 8000:
                    break
        payload = sim.push_payload("bench/payloads", before=base, after=shas[count - 1])
        path = stage.home / f"payload-{count}.json"
        path.write_text(json.dumps(payload))
        paths[name] = path
    return paths
