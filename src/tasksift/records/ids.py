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
    """Content-hash ids: 8 bytes a record, plus the rows that repeat an earlier record's content."""

    def __init__(self) -> None:
        self._digests = array("Q")
        self._repeat_rows = np.zeros(0, dtype=np.int64)
        self._repeat_k = np.zeros(0, dtype=np.int64)

    def append(self, digest: str) -> None:
        """Add the next record's hash (16 hex digits, without a repeat suffix)."""
        self._digests.append(int(digest, 16))

    def __len__(self) -> int:
        return len(self._digests)

    def __delitem__(self, index: slice) -> None:
        """``del ids[n:]``: forget the records from row ``n`` on (to read a file again from its start)."""
        n = index.indices(len(self))[0]
        del self._digests[n:]

    def finish(self) -> None:
        """Number the repeats: the k-th record (k >= 1, in row order) with the same hash gets ``-k``."""
        d = np.frombuffer(self._digests, dtype=np.uint64) if len(self._digests) else np.zeros(0, np.uint64)
        order = np.argsort(d, kind="stable")  # equal hashes stay in row order
        ranked = d[order]
        same = ranked[1:] == ranked[:-1]  # sorted position j + 1 repeats position j
        del ranked, d
        repeats = np.flatnonzero(same) + 1
        if not len(repeats):
            self._repeat_rows, self._repeat_k = np.zeros(0, np.int64), np.zeros(0, np.int64)
            return
        firsts = np.flatnonzero(np.concatenate([[True], ~same]))  # where each run of one hash starts
        del same
        k = repeats - firsts[np.searchsorted(firsts, repeats, side="right") - 1]
        rows = order[repeats]
        by_row = np.argsort(rows)
        self._repeat_rows, self._repeat_k = rows[by_row].astype(np.int64), k[by_row].astype(np.int64)

    def _get(self, i: int) -> str:
        digest = f"{self._digests[i]:016x}"
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
