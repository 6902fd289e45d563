"""``python -m ghapp``: the same as the ``ghapp`` command."""

from ghapp.cli import main

raise SystemExit(main())
