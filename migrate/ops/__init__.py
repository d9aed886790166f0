"""Operations over whole runs, composed from the phases below.

Delta replay, the restricted-services window, rehearsals and their comparison, the cutover
gate, the demo, compensations and the overview of runs (``billmig runs``).
"""
