"""ghapp: a webhook-driven GitHub App server: signed webhook in, exact commit processed."""
