"""Mapping rules of SPEC §5: pure, vectorised functions of a chunk (Arrow or pandas in, out).

No I/O and no per-row Python loops, so the same functions can run partition by partition on
Dask. ``validate`` must never import this package (four-eyes rule).
"""
