"""The README's "Testing your own processor" example runs as it is written."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support import ROOT


def test_the_readmes_simulator_example_runs_as_written(tmp_path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Testing your own processor", 1)[1]
    (code,) = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.S)
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/local/bin:/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    api_url, url, matched = done.stdout.split()
    assert api_url.startswith("http://127.0.0.1:")
    assert url.startswith("http://127.0.0.1:")
    assert matched == "True"
