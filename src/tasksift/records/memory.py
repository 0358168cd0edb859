"""Records already in memory: lists of dicts, ``datasets.Dataset``, ``datasets.IterableDataset`` and
``pandas.DataFrame``.

- a list is kept by reference, and ``take`` returns deep copies;
- a ``Dataset`` (format ``hf``) is read in Arrow batches and kept, to fetch rows by position; its hash is that
  of its fingerprint;
- a ``DataFrame`` becomes an Arrow table (zero-copy where the columns allow), read in batches and kept;
- an ``IterableDataset`` is streamed once, one record at a time, and never held: only ids and text views are
  kept, and ``take`` streams it again up to the last row wanted. It must yield the same records in the same
  order each time (a stream shuffled without a fixed seed does not).

The hash of a list, a DataFrame or an IterableDataset is over the records' canonical JSON, one per line. Every
value must be one JSON can hold, since the chosen records are written to ``selected.jsonl``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa

from tasksift.records import hf_dataset
from tasksift.records.readers import Loaded, add_batches, needed_columns, rows_of
from tasksift.records.view import ViewBuilder, Where, canonical_record
from tasksift.util.errors import InputError
from tasksift.util.io import to_jsonable


def kind_of(source: Any) -> str | None:
    """``dataset``, ``iterable`` or ``dataframe`` for those objects, else None (without importing them)."""
    datasets, pandas = sys.modules.get("datasets"), sys.modules.get("pandas")
    if datasets is not None and isinstance(source, datasets.Dataset):
        return "dataset"
    if datasets is not None and isinstance(source, datasets.IterableDataset):
        return "iterable"
    if pandas is not None and isinstance(source, pandas.DataFrame):
        return "dataframe"
    return None


def read_dicts(records: Iterable[Any], builder: ViewBuilder) -> Loaded:
    """A list of dicts, checked and kept by reference."""
    rows = records if isinstance(records, list) else list(records)
    return Loaded(builder, _add_dicts(rows, builder), rows)


def take_dicts(path: None, rows: list[dict[str, Any]], idx: np.ndarray) -> list[dict[str, Any]]:
    return [copy.deepcopy(rows[i]) for i in idx]


def read_dataset(dataset: Any, builder: ViewBuilder, batch_size: int) -> Loaded:
    columns = needed_columns(builder, dataset.column_names)
    view = dataset.select_columns(columns) if columns is not None else dataset
    add_batches(view.with_format("arrow").iter(batch_size=batch_size), builder, Where(index=0))
    return Loaded(builder, hashlib.sha256(str(dataset._fingerprint).encode()).hexdigest(), dataset)


take_dataset = hf_dataset.take


def read_frame(frame: Any, builder: ViewBuilder, batch_size: int) -> Loaded:
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError) as e:
        raise InputError(f"the DataFrame cannot be read as records: {e}",
                         fix="give columns of text, numbers, lists or dicts") from e
    builder.resolve_default_text(table.column_names)
    digest = hashlib.sha256()
    i = 0
    for batch in table.to_batches(max_chunksize=batch_size):
        rows = rows_of(batch, builder, Where(index=i))
        _add_dicts(rows, builder, first=i, digest=digest)
        i += len(rows)
    return Loaded(builder, digest.hexdigest(), table)


def take_frame(path: None, table: pa.Table, idx: np.ndarray) -> pa.Table:
    return table.take(pa.array(idx))


def read_iterable(dataset: Any, builder: ViewBuilder, batch_size: int) -> Loaded:
    """One pass over the stream; nothing of it is kept but ids and text views."""
    digest = hashlib.sha256()
    _add_dicts(iter(dataset), builder, digest=digest)
    return Loaded(builder, digest.hexdigest(), dataset)


def take_iterable(path: None, dataset: Any, idx: np.ndarray) -> list[dict[str, Any]]:
    """The rows at ``idx``, streaming the dataset again and stopping after the last one wanted."""
    unique, inverse = np.unique(idx, return_inverse=True)
    found: list[dict[str, Any]] = []
    count = 0
    if len(unique):
        for rec in dataset:
            if count == unique[len(found)]:
                found.append(rec)
                if len(found) == len(unique):
                    break
            count += 1
    if len(found) < len(unique):
        raise InputError(f"the IterableDataset yielded {count} records on a second pass, too few for row "
                         f"{int(unique[len(found)])}",
                         fix="pass a dataset that yields the same records each time it is read")
    return [copy.deepcopy(found[j]) for j in inverse]


def _add_dicts(rows: Iterable[Any], builder: ViewBuilder, first: int = 0,
               digest: Any = None) -> str:
    """Add each record (checked to be a dict JSON can hold); the sha256 of their canonical JSON lines."""
    digest = digest if digest is not None else hashlib.sha256()
    for i, rec in enumerate(rows, start=first):
        if not isinstance(rec, dict):
            raise InputError(f"record {i} is a {type(rec).__name__}, not a dict",
                             fix="pass records as dicts of field -> value")
        builder.add(rec, Where(index=i), check_surrogates=True)
        _check_writable(rec, i)
        digest.update(canonical_record(rec) + b"\n")
    return digest.hexdigest()


def _check_writable(rec: dict[str, Any], i: int) -> None:
    """Raise InputError naming the field of record ``i`` that JSON cannot hold."""
    try:
        json.dumps(rec, default=to_jsonable)
        return
    except (TypeError, ValueError, RecursionError):
        pass
    for key, value in rec.items():
        try:
            json.dumps({key: value}, default=to_jsonable)
        except (TypeError, ValueError, RecursionError):
            raise InputError(f"record {i}: field {str(key)[:80]!r} holds a {type(value).__name__} value that cannot "
                             "be written to selected.jsonl", fix="convert it to text, a number, a list or a dict "
                             "(decode bytes), or drop the field") from None
    raise InputError(f"record {i} cannot be written as JSON", fix="give fields of text, numbers, lists and dicts")
