"""``/dashboard``: the deliveries and their jobs for an operator, with a button to run one again."""

from __future__ import annotations

from flask import Blueprint

blueprint = Blueprint("dashboard", __name__)
