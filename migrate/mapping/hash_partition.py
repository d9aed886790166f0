"""Hash partitioning on disk, so rules that join entities run in bounded memory.

A check that spans chunks (one MSISDN on two lines, one national ID on two clients, a line
whose account does not exist) is exact when every row sharing the joined value lands in the
same partition. :class:`Scatter` streams an entity's row groups into ``n`` Arrow IPC files by
a hash of one text column; each partition is then small enough to map as one DataFrame, and
partitions are independent, so they can run in parallel (processes here, Dask later).

The hash is computed from the UTF-8 bytes with numpy (a polynomial hash over the Arrow data
buffer), about twenty times faster than hashing Python strings, and it is stable across
processes and runs: the same snapshot always splits the same way.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

_MULTIPLIER = np.uint64(0x100000001B3)
_MIX = np.uint64(0x9E3779B97F4A7C15)


def text_hash(values: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.uint64]:
    """A stable 64-bit hash of each value's text (nulls hash like the empty string)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], pa.string())
    texts = pc.fill_null(values.cast(pa.large_string()), "")
    n = len(texts)
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64)[texts.offset : texts.offset + n + 1]
    data_buffer = texts.buffers()[2]
    data = (
        np.frombuffer(data_buffer, dtype=np.uint8)
        if data_buffer is not None
        else np.zeros(0, np.uint8)
    )
    start, end = int(offsets[0]), int(offsets[-1])
    data = data[start:end].astype(np.uint64)
    lengths = np.diff(offsets)
    position = np.arange(end - start, dtype=np.int64) - np.repeat(offsets[:-1] - start, lengths)
    powers = _powers(int(lengths.max()) if n else 0)
    with np.errstate(over="ignore"):
        weighted = (data + np.uint64(1)) * powers[position]
        sums = np.zeros(n, dtype=np.uint64)
        nonempty = lengths > 0
        if nonempty.any():
            sums[nonempty] = np.add.reduceat(weighted, (offsets[:-1] - start)[nonempty])
        mixed = (sums ^ (sums >> np.uint64(29))) * _MIX
        return np.asarray(mixed ^ (mixed >> np.uint64(32)), dtype=np.uint64)


def _powers(length: int) -> npt.NDArray[np.uint64]:
    powers = np.ones(max(length, 1), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i in range(1, len(powers)):
            powers[i] = powers[i - 1] * _MULTIPLIER
    return powers


def partition_of(values: pa.Array | pa.ChunkedArray, partitions: int) -> npt.NDArray[np.int64]:
    """The partition (0 .. ``partitions`` − 1) of each value."""
    return np.asarray(text_hash(values) % np.uint64(partitions), dtype=np.int64)


class Scatter:
    """Writes tables into ``partitions`` IPC files ``<directory>/<name>-<p>.arrow``.

    Use as a context manager; :meth:`write` takes a table and the partition of each row.
    Every partition file exists afterwards (possibly empty), with the same schema.
    """

    def __init__(self, directory: Path, name: str, schema: pa.Schema, partitions: int) -> None:
        self.paths = [directory / f"{name}-{p:04d}.arrow" for p in range(partitions)]
        self.schema = schema
        self._writers = [ipc.new_file(str(path), schema) for path in self.paths]

    def write(self, table: pa.Table, partition: npt.NDArray[np.int64]) -> None:
        """Append each row of ``table`` to its partition's file."""
        order = np.argsort(partition, kind="stable")
        counts = np.bincount(partition, minlength=len(self._writers))
        ordered = table.take(pa.array(order))
        offset = 0
        for writer, count in zip(self._writers, counts.tolist(), strict=True):
            if count:
                writer.write_table(ordered.slice(offset, count))
            offset += count

    def __enter__(self) -> Scatter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for writer in self._writers:
            writer.close()


def read_partition(path: Path) -> pa.Table:
    """One partition file as a table (memory-mapped, so reading costs no copy)."""
    with pa.memory_map(str(path)) as source:
        return ipc.open_file(source).read_all()


def to_table(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """``frame``'s columns named in ``schema``, converted to exactly its types.

    Timestamps become dates where the schema says date; all-null columns take the schema's
    type, so every partition writes the same schema whatever it happened to contain.
    """
    arrays = []
    for field in schema:
        array = pa.array(frame[field.name], from_pandas=True)
        if array.type != field.type:
            array = array.cast(field.type, safe=not pa.types.is_date(field.type))
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=schema)
