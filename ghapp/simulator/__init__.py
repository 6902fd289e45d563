"""A loopback stand-in for GitHub (REST API and git over smart HTTP) for tests and demos.

Start one with ``GitHubSimulator(app_id, public_key_pem, root).start()``.
"""

from ghapp.simulator.app_keys import generate_app_key
from ghapp.simulator.models import HookDelivery, MintRecord, Repository, RequestRecord
from ghapp.simulator.server import GitHubSimulator

__all__ = [
    "GitHubSimulator",
    "HookDelivery",
    "MintRecord",
    "Repository",
    "RequestRecord",
    "generate_app_key",
]
