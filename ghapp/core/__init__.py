"""ghapp's core: settings, Redis keys and connection, logging, the job contract, the process's
secrets. It imports neither process package (``webapp``, ``worker``) nor the wiring above them."""
