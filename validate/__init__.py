"""Independent checks and the sign-off pack.

Four-eyes rule (SPEC §1): nothing here imports ``migrate``'s pipeline or mapping code; it
re-derives what it checks from the snapshot and the target, so a mapper bug cannot hide itself.
It may use ``migrate.core`` alone: the shared vocabulary (schemas, reason codes, configuration,
the artifacts phases hand each other) and plumbing (engines, errors, the ledger, the run folder).
The import-linter contracts in ``pyproject.toml`` enforce this for every module, new ones too.
"""
