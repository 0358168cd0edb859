"""Several files of one format read as one source: rows numbered across the files in order.

Each file is read by its format's reader into the same builder (so ids stay unique and content repeats are
counted across files), and an error names the file and its line (or record). Rows are fetched again from the
files that hold them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from tasksift.records.column import JoinedRows
from tasksift.records.formats import READERS
from tasksift.records.readers import Loaded
from tasksift.records.sources import detect_format, sha256_of_parts
from tasksift.records.view import ViewBuilder
from tasksift.util.errors import InputError


class Part(NamedTuple):
    """One file of the source: its path, what its format's ``take`` needs, and the row it starts at."""

    path: Path
    state: Any
    start: int


def common_format(files: list[Path]) -> str:
    """The format every file has; an error naming the first file of another format."""
    fmt = detect_format(files[0])
    for file in files[1:]:
        other = detect_format(file)
        if other != fmt:
            raise InputError(f"this {other} file is read with {files[0]}, a {fmt} file", path=file,
                             fix="give files of one format")
    return fmt


def read(files: list[Path], fmt: str, builder: ViewBuilder, batch_size: int) -> Loaded:
    """Every file in turn; the hash is over the files' names and hashes, in order."""
    parts, hashes, fetchers = [], [], []
    for file in files:
        builder.at(file)
        start = len(builder.ids)
        loaded = READERS[fmt].read(file, builder, batch_size)
        builder = loaded.builder
        parts.append(Part(file, loaded.state, start))
        hashes.append((file.name, loaded.sha256))
        fetchers.append((start, loaded.rows))
    builder.at(None)
    builder.label = ", ".join(str(f) for f in files[:3]) + (", ..." if len(files) > 3 else "")
    rows = None if any(f is None for _, f in fetchers) else JoinedRows(fetchers, len(builder.ids))
    return Loaded(builder, sha256_of_parts(hashes), (fmt, parts), rows)


def take(path: None, state: tuple[str, list[Part]], idx: np.ndarray) -> list[dict[str, Any]] | pa.Table:
    """The rows at ``idx``, each fetched from its file, in the order of ``idx``."""
    fmt, parts = state
    fetch = READERS[fmt].take
    starts = np.array([part.start for part in parts], dtype=np.int64)
    owner = np.searchsorted(starts, idx, side="right") - 1
    pieces, where = [], []
    for k in np.unique(owner):
        chosen = np.flatnonzero(owner == k)
        pieces.append(fetch(parts[k].path, parts[k].state, idx[chosen] - parts[k].start))
        where.append(chosen)
    if not pieces:
        return fetch(parts[0].path, parts[0].state, idx)
    order = np.argsort(np.concatenate(where), kind="stable")
    if all(isinstance(p, pa.Table) for p in pieces):
        return pa.concat_tables(pieces, promote_options="permissive").take(pa.array(order))
    rows = [row for p in pieces for row in (p.to_pylist() if isinstance(p, pa.Table) else p)]
    return [rows[i] for i in order]
