"""Record ids kept compactly for a streamed input (:mod:`.column`): a few bytes a record, not a Python string.

- :class:`ContentIds`: the 16-hex-digit content hash of each record as one 64-bit integer; the k-th repeat of a
  hash (k >= 1) is numbered once the whole input is read (:meth:`ContentIds.finish`), so the ids are exactly those
  of the plain list (``<hash>`` then ``<hash>-1``, ``<hash>-2``, ... in row order).
- :class:`FieldIds`: the ids of an id field as UTF-8 bytes one after another with the end offset of each; a
  repeated id is found once the whole input is read (:meth:`FieldIds.first_repeat`), among the rows whose 64-bit
  hash repeats.

Past small buffers all of it is kept in temporary files (:mod:`tasksift.util.spill`), and repeats are found by
sorting a copy of the hashes in a scratch file: the memory these take does not grow with the input.

Both read like a list of ``str`` (``ids[i]``, ``ids[a:b]``, ``len``, iteration).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np

from tasksift.util.positions import position
from tasksift.util.spill import SpilledArray, SpilledBytes, scratch

#: hashes handled at a time when repeats are numbered
FINISH_CHUNK = 1 << 20


class _Ids(Sequence[str]):
    """What both kinds share: indexing by int or slice, iteration; each kind gives ``__len__`` and ``_get``."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def _get(self, i: int) -> str: ...

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        n = len(self)
        if isinstance(index, slice):
            return [self._get(i) for i in range(*index.indices(n))]
        return self._get(position(index, n, "ids"))

    def __iter__(self) -> Iterator[str]:
        for i in range(len(self)):
            yield self._get(i)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)})"


class ContentIds(_Ids):
    """Content-hash ids: one 64-bit integer a record, in a temporary file past a small buffer
    (:class:`tasksift.util.spill.SpilledArray`), plus the rows that repeat an earlier record's content."""

    def __init__(self) -> None:
        self._spill = SpilledArray(np.uint64)
        self._digests: np.ndarray | None = None  # all of them once finished
        self._repeat_rows = np.zeros(0, dtype=np.int64)
        self._repeat_k = np.zeros(0, dtype=np.int64)

    def append(self, digest: str) -> None:
        """Add the next record's hash (16 hex digits, without a repeat suffix)."""
        self._spill.append(int(digest, 16))
        self._digests = None

    def __len__(self) -> int:
        return len(self._spill)

    def __delitem__(self, index: slice) -> None:
        """``del ids[n:]``: forget the records from row ``n`` on (to read a file again from its start)."""
        self._spill.truncate(index.indices(len(self))[0])
        self._digests = None

    def finish(self) -> None:
        """Number the repeats: the k-th record (k >= 1, in row order) with the same hash gets ``-k``. The hashes
        are sorted in a scratch file, a copy, to find the repeated values; only the rows holding one of those
        are gathered in memory, so nothing here takes memory in proportion to the records."""
        d = self._values()
        rows = _rows_holding(d, _repeated_values(d))  # ascending
        by_value = np.argsort(d[rows], kind="stable")  # equal hashes stay in row order
        values = d[rows][by_value]
        first = np.concatenate([[True], values[1:] != values[:-1]]) if len(values) else np.zeros(0, bool)
        starts = np.flatnonzero(first)
        k = np.arange(len(values)) - starts[np.cumsum(first) - 1]  # 0 for the first of each hash
        again = k > 0
        repeat_rows, repeat_k = rows[by_value][again], k[again]
        by_row = np.argsort(repeat_rows)
        self._repeat_rows, self._repeat_k = repeat_rows[by_row].astype(np.int64), repeat_k[by_row].astype(np.int64)

    def _values(self) -> np.ndarray:
        if self._digests is None:
            self._digests = self._spill.values()
        return self._digests

    def _get(self, i: int) -> str:
        digest = f"{int(self._values()[i]):016x}"
        at = int(np.searchsorted(self._repeat_rows, i))
        if at < len(self._repeat_rows) and self._repeat_rows[at] == i:
            return f"{digest}-{int(self._repeat_k[at])}"
        return digest


class FieldIds(_Ids):
    """Ids of an id field: their UTF-8 bytes one after another and the end offset of each, both in temporary
    files past small buffers (:mod:`tasksift.util.spill`)."""

    def __init__(self) -> None:
        self._data = SpilledBytes()
        self._ends = SpilledArray(np.int64)
        self._read: tuple[memoryview, np.ndarray] | None = None  # the bytes and ends, once read

    def append(self, rid: str) -> None:
        self._read = None
        self._data.append(rid.encode("utf-8", "surrogatepass"))
        self._ends.append(len(self._data))

    def __len__(self) -> int:
        return len(self._ends)

    def __delitem__(self, index: slice) -> None:
        """``del ids[n:]``: forget the records from row ``n`` on (to read a file again from its start)."""
        n = index.indices(len(self))[0]
        self._read = None
        end = int(self._ends.values()[n - 1]) if n > 0 else 0
        self._ends.truncate(n)
        self._data.truncate(end)

    def _bytes(self, i: int) -> bytes:
        if self._read is None:
            self._read = self._data.view(), self._ends.values()
        data, ends = self._read
        return bytes(data[int(ends[i - 1]) if i > 0 else 0:int(ends[i])])

    def _get(self, i: int) -> str:
        return self._bytes(i).decode("utf-8", "surrogatepass")

    def first_repeat(self) -> tuple[int, int] | None:
        """``(row, first)`` of the earliest row whose id an earlier row ``first`` already has, else None. The
        ids' 64-bit hashes go to a scratch file; only the rows whose hash repeats are compared by their bytes."""
        n = len(self)
        hashes = scratch((n,), np.int64)
        for lo in range(0, n, FINISH_CHUNK):
            hi = min(n, lo + FINISH_CHUNK)
            hashes[lo:hi] = np.fromiter((hash(self._bytes(i)) for i in range(lo, hi)), dtype=np.int64, count=hi - lo)
        seen: dict[bytes, int] = {}
        for row in _rows_holding(hashes, _repeated_values(hashes)).tolist():  # ascending
            first = seen.setdefault(self._bytes(row), row)
            if first != row:
                return row, first
        return None


def _repeated_values(values: np.ndarray) -> np.ndarray:
    """The values that occur more than once in ``values``, sorted: found in a sorted copy in a scratch file,
    :data:`FINISH_CHUNK` at a time, so that no copy of ``values`` is held in memory."""
    ranked = scratch((len(values),), values.dtype)
    for lo in range(0, len(values), FINISH_CHUNK):
        ranked[lo:lo + FINISH_CHUNK] = values[lo:lo + FINISH_CHUNK]
    ranked.sort()
    parts = (ranked[lo:lo + FINISH_CHUNK + 1] for lo in range(0, max(len(values) - 1, 0), FINISH_CHUNK))
    # the chunks overlap by one value, so that a pair across two chunks is seen
    return np.unique(np.concatenate([np.zeros(0, values.dtype)] + [p[1:][p[1:] == p[:-1]] for p in parts]))


def _rows_holding(values: np.ndarray, repeated: np.ndarray) -> np.ndarray:
    """The rows of ``values`` that hold one of ``repeated``, ascending, read :data:`FINISH_CHUNK` at a time."""
    if not len(repeated):
        return np.zeros(0, np.int64)
    return np.concatenate([np.flatnonzero(np.isin(values[lo:lo + FINISH_CHUNK], repeated)) + lo
                           for lo in range(0, len(values), FINISH_CHUNK)]).astype(np.int64)
