"""The load phase: mapped output → target database, its rollback, and vendor load files.

``run`` is the phase (load and rollback, their declarations); ``writer`` writes batches with
their journal rows; ``export`` writes vendor CSV files instead of a database.
"""
