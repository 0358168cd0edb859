"""The files of a selection, each written atomically (see :mod:`tasksift.util.io`).

A reader never sees a half-written ``selection.parquet`` or ``manifest.json``. ``manifest.json`` is written
last, so its presence means the run's outputs are complete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasksift.records import RecordSet
from tasksift.util.errors import InputError
from tasksift.util.io import atomic_path, atomic_write, json_text, to_jsonable, write_text_atomic

if TYPE_CHECKING:
    from tasksift.selection.selection import Selection

#: file names write_selection_outputs owns; a side table may not take one of them
RESERVED_NAMES = ("selection", "selected", "manifest")
#: chosen records fetched and written at a time
WRITE_CHUNK = 10_000


def write_parquet_atomic(path: Path, table: pa.Table) -> Path:
    """Write ``table`` as parquet atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def write_selection_outputs(selection: Selection, out_dir: Path,
                            records: RecordSet | None) -> dict[str, Path]:
    """Write a selection's files into ``out_dir`` and return them by name.

    ``selection.parquet`` (one row per chosen example), ``<name>.parquet`` for each side table, the chosen
    records in rank order when ``records`` is given (``selected.parquet`` for a parquet pool, else
    ``selected.jsonl``; each record with ``_id``, ``_rank`` and ``_weight`` added) and ``manifest.json`` last.
    """
    out_dir = Path(out_dir)
    _check_table_names(selection.tables)
    manifest_text = json_text(selection.manifest)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("the output path is a file, not a directory", path=out_dir,
                         fix="give --out a new or existing directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {"selection": write_parquet_atomic(out_dir / "selection.parquet", selection.to_arrow())}
    for name, table in selection.tables.items():
        written[name] = write_parquet_atomic(out_dir / f"{name}.parquet", table)
    if records is not None:
        written["selected"] = _write_selected(selection, out_dir, records)
    written["manifest"] = write_text_atomic(out_dir / "manifest.json", manifest_text)
    return written


def _check_table_names(tables: dict[str, pa.Table]) -> None:
    for name in tables:
        if name in RESERVED_NAMES or not name or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"side table name {name!r} cannot be a file name next to the selection")


def _extras(selection: Selection, start: int, stop: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    return selection.ids[start:stop], selection.ranks[start:stop], selection.weights[start:stop]


def _write_selected(selection: Selection, out_dir: Path, records: RecordSet) -> Path:
    if len(selection) and int(selection.indices.max()) >= len(records):
        raise ValueError(f"the selection points at row {int(selection.indices.max())} but the records have "
                         f"{len(records)} rows")
    if records.format == "parquet":
        return _write_selected_parquet(selection, out_dir / "selected.parquet", records)
    return _write_selected_jsonl(selection, out_dir / "selected.jsonl", records)


def _write_selected_jsonl(selection: Selection, path: Path, records: RecordSet) -> Path:
    def write(f: BinaryIO) -> None:
        for start in range(0, len(selection), WRITE_CHUNK):
            stop = start + WRITE_CHUNK
            ids, ranks, weights = _extras(selection, start, stop)
            chosen = records.take(selection.indices[start:stop])
            for rec, rid, rank, weight in zip(chosen, ids, ranks, weights, strict=True):
                out = {**rec, "_id": rid, "_rank": int(rank), "_weight": float(weight)}
                f.write(_json_line(out))

    return atomic_write(path, write)


def _json_line(obj: dict[str, Any]) -> bytes:
    """One JSON line in UTF-8; a record holding a lone surrogate is written with ``\\u`` escapes instead."""
    try:
        return (json.dumps(obj, ensure_ascii=False, default=to_jsonable) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(obj, ensure_ascii=True, default=to_jsonable) + "\n").encode("ascii")


def _write_selected_parquet(selection: Selection, path: Path, records: RecordSet) -> Path:
    with atomic_path(path) as tmp:
        writer: pq.ParquetWriter | None = None
        try:
            for start in range(0, max(len(selection), 1), WRITE_CHUNK):
                stop = start + WRITE_CHUNK
                table = _with_extras(records.take_table(selection.indices[start:stop]),
                                     *_extras(selection, start, stop))
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
    return path


def _with_extras(table: pa.Table, ids: list[str], ranks: np.ndarray, weights: np.ndarray) -> pa.Table:
    """Add (or replace) the ``_id``, ``_rank`` and ``_weight`` columns."""
    extra = {"_id": pa.array(ids, type=pa.string()), "_rank": pa.array(ranks, type=pa.int64()),
             "_weight": pa.array(weights, type=pa.float64())}
    for name, column in extra.items():
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, column) if i >= 0 else table.append_column(name, column)
    return table
