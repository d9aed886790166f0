"""The extract phase: legacy database → snapshot (Parquet, manifest, exceptions).

``run`` is the phase (its core function and declaration); ``profiles`` reads a source profile,
``reader`` streams the legacy tables, ``normalise`` turns driver values into snapshot columns.
"""
