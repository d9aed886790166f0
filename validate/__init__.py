"""Independent checks and the sign-off pack.

Four-eyes rule (SPEC §1): nothing here imports ``migrate``'s pipeline or mapping code; it
re-derives what it checks from the snapshot and the target, so a mapper bug cannot hide itself.
It may use the shared vocabulary and plumbing: ``migrate.legacy_schema``,
``migrate.target_schema``, ``migrate.reasons``, ``migrate.config``, ``migrate.db`` (engines,
error translation), ``migrate.errors`` and ``migrate.rendering``. The import-linter contracts
in ``pyproject.toml`` enforce this.
"""
