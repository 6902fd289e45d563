"""``GET /metrics``: the figures every process counts in Redis, in Prometheus' text format."""

from __future__ import annotations

from flask import Blueprint

blueprint = Blueprint("metrics", __name__)
