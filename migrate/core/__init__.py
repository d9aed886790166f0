"""The shared base every phase stands on, and the only part of ``migrate`` that ``validate`` uses.

Configuration, errors, database engines, hashing, the workspace lock, the run ledger, the run
folder (:mod:`migrate.core.runs`), the artifacts phases hand each other, reason codes, the
reference and target schemas, progress and plain display data. Nothing here knows a mapping
rule, so ``validate`` can lean on it and still re-derive everything it checks.
"""
