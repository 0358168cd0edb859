"""``.parquet``: read in batches of only the needed columns; rows fetched again from the row groups holding them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasksift.records.files import file_sha256
from tasksift.records.readers import Loaded, add_batches, needed_columns
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
    return Loaded(builder, sha)


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
