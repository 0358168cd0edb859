"""Arrays kept in temporary files instead of anonymous memory, for what grows with the input.

- :func:`scratch`: a writable array of a known shape, backed by an unnamed temporary file;
- :class:`SpilledArray`: values appended one at a time (a record's line offset, its content hash), written to
  an unnamed temporary file past a small buffer, then read as one memory-mapped array;
- :class:`SpilledBytes`: the same for bytes appended piece by piece (the UTF-8 of ids from a field).

The kernel writes such pages out when memory is short and reads them back when they are used, so the memory
they take is page cache, which it can take back, not the process's own. Each file is gone once its array is.
"""

from __future__ import annotations

import mmap
import tempfile
from array import array
from typing import IO, Any

import numpy as np

#: values a :class:`SpilledArray` keeps in memory before it writes them to its file
BUFFER_VALUES = 1 << 16
#: bytes a :class:`SpilledBytes` keeps in memory before it writes them to its file
BUFFER_BYTES = 1 << 20
_CODES = {np.dtype(np.int64): "q", np.dtype(np.uint64): "Q"}


def scratch(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A writable array of ``shape`` backed by an unnamed temporary file (``$TMPDIR``), not by anonymous
    memory: the kernel writes its pages out when memory is short. The file is gone once the array is."""
    with tempfile.TemporaryFile(prefix="tasksift-scratch-") as f:
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        f.truncate(max(size, 1))
        return np.memmap(f, dtype=dtype, mode="r+", shape=shape)


class SpilledArray:
    """64-bit integers (``int64`` or ``uint64``) appended one at a time, kept as :class:`SpilledBytes` past a
    buffer of :data:`BUFFER_VALUES` of them. :meth:`values` gives them all as one array: memory-mapped from the
    file when they reached it, else a copy of what is in memory (no file for a small input)."""

    def __init__(self, dtype: Any) -> None:
        self.dtype = np.dtype(dtype)
        self._code = _CODES[self.dtype]
        self._buffer = array(self._code)
        self.spilled = SpilledBytes()

    def __len__(self) -> int:
        return len(self.spilled) // self.dtype.itemsize + len(self._buffer)

    def append(self, value: int) -> None:
        self._buffer.append(value)
        if len(self._buffer) >= BUFFER_VALUES:
            self._move()

    def _move(self) -> None:
        self.spilled.append(self._buffer.tobytes())
        self._buffer = array(self._code)

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` values (to read an input again from its start)."""
        n, moved = max(0, min(int(n), len(self))), len(self.spilled) // self.dtype.itemsize
        if n >= moved:
            del self._buffer[n - moved:]
        else:
            self._buffer = array(self._code)
            self.spilled.truncate(n * self.dtype.itemsize)

    def values(self) -> np.ndarray:
        """Every value appended, in order (read-only once in the file). Appending after this gives a new array at
        the next call."""
        self._move()
        return np.frombuffer(self.spilled.view(), dtype=self.dtype)


class SpilledBytes:
    """Bytes appended piece by piece (ids' UTF-8), in an unnamed temporary file past :data:`BUFFER_BYTES` of them;
    :meth:`view` reads them all, memory-mapped."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._file: IO[bytes] | None = None
        self._written = 0

    def __len__(self) -> int:
        return self._written + len(self._buffer)

    def append(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= BUFFER_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="tasksift-spill-")
        self._file.seek(self._written)
        self._file.write(self._buffer)
        self._written += len(self._buffer)
        self._buffer = bytearray()

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` bytes."""
        n = max(0, min(int(n), len(self)))
        if n >= self._written:
            del self._buffer[n - self._written:]
            return
        self._buffer = bytearray()
        self._written = n
        assert self._file is not None
        self._file.truncate(n)

    @property
    def in_file(self) -> bool:
        """Whether some of the bytes went to the file."""
        return self._file is not None

    def view(self) -> memoryview:
        """Every byte appended, read-only (a memory map of the file, or a copy of the small buffer)."""
        if self._file is None:
            return memoryview(bytes(self._buffer))
        self._flush()
        if not self._written:
            return memoryview(b"")
        self._file.flush()
        return memoryview(mmap.mmap(self._file.fileno(), self._written, access=mmap.ACCESS_READ))
