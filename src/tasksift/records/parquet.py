"""``.parquet``: read in batches of only the needed columns; rows fetched again from the row groups holding them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasksift.records.files import file_sha256
from tasksift.records.readers import Loaded, add_batches, needed_columns, text_columns
from tasksift.records.view import ViewBuilder, Where
from tasksift.util.errors import InputError


def read(path: Path, builder: ViewBuilder, batch_size: int) -> Loaded:
    sha = file_sha256(path)  # first: an unreadable file fails here with a clear message
    try:
        pfile = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"not a readable parquet file: {e}", path=path,
                         fix="write it with pyarrow or pandas to_parquet") from e
    with pfile:
        columns = needed_columns(builder, pfile.schema_arrow.names)
        add_batches(pfile.iter_batches(batch_size=batch_size, columns=columns), builder, Where(index=0))
        rows = GroupRows(path, text_columns(builder, pfile.schema_arrow.names))
    return Loaded(builder, sha, None, rows)


class GroupRows:
    """``rows(start, stop)``: the text view's fields of rows ``start`` to ``stop - 1``, read from the row groups
    holding them (the last group read is kept, so reading a column range by range reads each group once)."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = columns
        self._starts: np.ndarray | None = None
        self._group: tuple[int, pa.Table] | None = None

    def __call__(self, start: int, stop: int) -> list[dict[str, Any]]:
        if stop <= start:
            return []
        with pq.ParquetFile(self.path) as pfile:
            if self._starts is None:
                sizes = [pfile.metadata.row_group(g).num_rows for g in range(pfile.num_row_groups)]
                self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
            out: list[dict[str, Any]] = []
            g = int(np.searchsorted(self._starts, start, side="right")) - 1
            while start < stop and g < len(self._starts) - 1:
                if self._group is None or self._group[0] != g:
                    self._group = (g, pfile.read_row_group(g, columns=self.columns))
                lo, hi = int(self._starts[g]), int(self._starts[g + 1])
                end = min(stop, hi)
                out.extend(self._group[1].slice(start - lo, end - start).to_pylist())
                start, g = end, g + 1
        return out


def take(path: Path, state: None, idx: np.ndarray) -> pa.Table:
    """Rows at ``idx``, reading only the row groups that hold them."""
    with pq.ParquetFile(path) as pfile:
        sizes = [pfile.metadata.row_group(g).num_rows for g in range(pfile.num_row_groups)]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        unique, inverse = np.unique(idx, return_inverse=True)
        groups = np.searchsorted(starts, unique, side="right") - 1
        pieces = [pfile.read_row_group(int(g)).take(unique[groups == g] - starts[g]) for g in np.unique(groups)]
        if not pieces:
            return pfile.schema_arrow.empty_table()
    return pa.concat_tables(pieces).take(inverse)
