"""A loopback stand-in for GitHub (REST API and git over smart HTTP) for tests and demos.

Start one with ``GitHubSimulator(app_id, public_key_pem, root).start()``, or with no App
(``GitHubSimulator(root=...)``) to register Apps through the manifest flow.
"""

from ghapp.simulator.app_keys import generate_app_key
from ghapp.simulator.models import (
    HookDelivery,
    Installation,
    MintRecord,
    Repository,
    RequestRecord,
    SimulatedApp,
)
from ghapp.simulator.server import GitHubSimulator

__all__ = [
    "GitHubSimulator",
    "HookDelivery",
    "Installation",
    "MintRecord",
    "Repository",
    "RequestRecord",
    "SimulatedApp",
    "generate_app_key",
]
