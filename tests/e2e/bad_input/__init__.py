"""Bad input, generated, against the real web process: never a 5xx, a one-line JSON refusal,
and never a job.

Every property posts to the session's web process (``stack``) and checks, per case: no 5xx
and no traceback; a 4xx is JSON with a one-line ``error``; a body that must be refused is a 4xx.
Per test: no new job anywhere in RQ (queue or registry), no new delivery ledger entry, the web
process still alive and no traceback in its log (``harness.Guard``). Explicit examples of
refusals found by these properties stand after the properties in each family's file.

``harness``      the guard, the answer check and the stack's settings the cases rely on
``payloads``     serialising and damaging a push payload
``strategies``   the hypothesis strategies
``conftest``     the ``push`` (one real, processed push, for the package) and ``guard`` fixtures
``test_*``       one file per family: signatures and headers, bodies and encodings, payload
                 fields, protocol-level garbage
"""
