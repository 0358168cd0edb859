"""Record ids kept compactly for a streamed input (:mod:`.column`): a few bytes a record, not a Python string.

- :class:`ContentIds`: the 16-hex-digit content hash of each record as one 64-bit integer; the k-th repeat of a
  hash (k >= 1) is numbered once the whole input is read (:meth:`ContentIds.finish`), so the ids are exactly those
  of the plain list (``<hash>`` then ``<hash>-1``, ``<hash>-2``, ... in row order).
- :class:`FieldIds`: the ids of an id field as UTF-8 bytes in one buffer with the end offset of each; a repeated
  id is found once the whole input is read (:meth:`FieldIds.first_repeat`), by sorting 64-bit hashes of the ids.

Both read like a list of ``str`` (``ids[i]``, ``ids[a:b]``, ``len``, iteration).
"""

from __future__ import annotations

from abc import abstractmethod
from array import array
from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np

from tasksift.util.positions import position
from tasksift.util.spill import SpilledArray, scratch

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
        ranked = scratch((len(d),), np.uint64)
        for lo in range(0, len(d), FINISH_CHUNK):
            ranked[lo:lo + FINISH_CHUNK] = d[lo:lo + FINISH_CHUNK]
        ranked.sort()
        repeated = np.unique(np.concatenate([np.zeros(0, np.uint64)] + [
            part[1:][part[1:] == part[:-1]]  # chunks overlap by one value: a pair across two chunks is seen
            for part in (ranked[lo:lo + FINISH_CHUNK + 1] for lo in range(0, max(len(d) - 1, 0), FINISH_CHUNK))]))
        del ranked
        rows = np.concatenate([np.zeros(0, np.int64)] + [
            np.flatnonzero(np.isin(d[lo:lo + FINISH_CHUNK], repeated)) + lo for lo in range(0, len(d), FINISH_CHUNK)
        ]) if len(repeated) else np.zeros(0, np.int64)
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
    """Ids of an id field: their UTF-8 bytes in one buffer and the end offset of each."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._ends = array("q")

    def append(self, rid: str) -> None:
        self._data += rid.encode("utf-8", "surrogatepass")
        self._ends.append(len(self._data))

    def __len__(self) -> int:
        return len(self._ends)

    def __delitem__(self, index: slice) -> None:
        """``del ids[n:]``: forget the records from row ``n`` on (to read a file again from its start)."""
        n = index.indices(len(self))[0]
        del self._ends[n:]
        del self._data[self._end(n - 1):]

    def _end(self, i: int) -> int:
        return self._ends[i] if i >= 0 else 0

    def _bytes(self, i: int) -> bytes:
        return bytes(self._data[self._end(i - 1):self._ends[i]])

    def _get(self, i: int) -> str:
        return self._bytes(i).decode("utf-8", "surrogatepass")

    def first_repeat(self) -> tuple[int, int] | None:
        """``(row, first)`` of the earliest row whose id an earlier row ``first`` already has, else None."""
        n = len(self)
        hashes = np.fromiter((hash(self._bytes(i)) for i in range(n)), dtype=np.int64, count=n)
        order = np.argsort(hashes, kind="stable")  # equal hashes stay in row order
        hashes.sort()  # in place: the hashes in the order of ``order``
        pair = np.flatnonzero(hashes[1:] == hashes[:-1])
        del hashes
        if not len(pair):
            return None
        seen: dict[bytes, int] = {}
        for row in np.unique(np.concatenate([order[pair], order[pair + 1]])).tolist():
            first = seen.setdefault(self._bytes(row), row)
            if first != row:
                return row, first
        return None
