"""A text column that does not hold its texts: each text is read again from the input when asked for.

A large input (:func:`streams`: above ``$TASKSIFT_STREAM_RECORDS_BYTES``, 256 MiB by default, or when
``load_records(..., stream=True)``) of a format that can fetch rows by position (jsonl, also compressed; parquet;
``save_to_disk`` directories) keeps, per record, only what fetching its row needs (a jsonl line's byte offset; a
row position for parquet and HF): :class:`TextColumn` parses the rows again and applies the view rule on demand.
A slice ``texts[start:stop]`` is one sequential read of the rows it covers (a jsonl file is read as one block
from the first row's offset); iteration goes :data:`CHUNK_ROWS` rows at a time. The texts are those the load
computed (and checked) from the same bytes, so they are equal, character for character, to the plain list's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from tasksift.util.env import env_bytes
from tasksift.util.errors import InputError
from tasksift.util.positions import position

#: environment variable: inputs larger than this many bytes are loaded with a :class:`TextColumn`
STREAM_ENV = "TASKSIFT_STREAM_RECORDS_BYTES"
#: the size above which an input is streamed when the environment does not say, in bytes
DEFAULT_STREAM_BYTES = 256 << 20
#: rows read at a time when a column is iterated
CHUNK_ROWS = 8192
#: the formats whose texts can be streamed (the others are loaded into a list whatever their size)
STREAMED_FORMATS = ("jsonl", "parquet", "hf")

#: ``rows(start, stop)``: the parsed records of rows ``start`` to ``stop - 1`` (the fields the view reads, at least)
Rows = Callable[[int, int], list[dict[str, Any]]]
#: ``text_of(record, row)``: the text view of one record
TextOf = Callable[[dict[str, Any], int], str]


def stream_threshold() -> int:
    """The size above which an input is streamed: ``$TASKSIFT_STREAM_RECORDS_BYTES``, else 256 MiB."""
    return env_bytes(STREAM_ENV, DEFAULT_STREAM_BYTES, minimum=0, example=268435456)


def input_bytes(files: Sequence[Path]) -> int:
    """The size of the input on disk: the files' sizes (a dataset directory: its ``.arrow`` files)."""
    total = 0
    for path in files:
        try:
            parts = sorted(path.glob("*.arrow")) if path.is_dir() else [path]
            total += sum(p.stat().st_size for p in parts)
        except OSError:
            continue  # the reader names the file it cannot read
    return total


def streams(stream: bool | None, fmt: str, files: Sequence[Path]) -> bool:
    """Whether to load the texts as a :class:`TextColumn`: ``stream`` when given (for a format that can),
    else whether the input is larger than :func:`stream_threshold`."""
    if fmt not in STREAMED_FORMATS or stream is False:
        return False
    return True if stream else input_bytes(files) > stream_threshold()


class TextColumn(Sequence[str]):
    """``n`` texts, each computed when asked for: ``text_of(record, row)`` over the records ``rows`` fetches.

    ``column[i]`` is one text; ``column[a:b]`` a list, read from the input in one pass; iterating reads
    :data:`CHUNK_ROWS` rows at a time. ``list(column)`` holds every text in memory: read a large column slice by
    slice instead. A column equals only itself (``==`` compares identity; compare ``list(column)`` to a list).
    """

    def __init__(self, n: int, rows: Rows, text_of: TextOf, *, source: str = "") -> None:
        self._n = int(n)
        self._rows = rows
        self._text_of = text_of
        self.source = source

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"TextColumn(n={self._n}, source={self.source!r})"

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._n)
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            return self.texts(start, stop) if stop > start else []
        i = position(index, self._n, "texts")
        return self.texts(i, i + 1)[0]

    def texts(self, start: int, stop: int) -> list[str]:
        """The texts of rows ``start`` to ``stop - 1`` (``0 <= start <= stop <= len``), read in one pass."""
        records = self._rows(start, stop)
        if len(records) != stop - start:
            raise InputError(f"rows {start}-{stop - 1} could not all be read again: the input changed after it was "
                             "loaded", path=self.source or None, fix="load the records again")
        return [self._text_of(rec, start + k) for k, rec in enumerate(records)]

    def __iter__(self) -> Iterator[str]:
        for start in range(0, self._n, CHUNK_ROWS):
            yield from self.texts(start, min(self._n, start + CHUNK_ROWS))

    def chunks(self, size: int = CHUNK_ROWS) -> Iterator[list[str]]:
        """The texts, ``size`` rows at a time, in row order."""
        for start in range(0, self._n, size):
            yield self.texts(start, min(self._n, start + size))


class JoinedRows:
    """The rows of several files read as one source: ``parts`` holds each file's first row and its fetcher."""

    def __init__(self, parts: Sequence[tuple[int, Rows]], n: int) -> None:
        self.starts = np.array([start for start, _ in parts] + [n], dtype=np.int64)
        self.fetchers = [rows for _, rows in parts]

    def __call__(self, start: int, stop: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        k = int(np.searchsorted(self.starts, start, side="right")) - 1
        while start < stop:
            lo, hi = int(self.starts[k]), int(self.starts[k + 1])
            end = min(stop, hi)
            if end > start:
                out.extend(self.fetchers[k](start - lo, end - lo))
            start, k = max(start, end), k + 1
        return out
