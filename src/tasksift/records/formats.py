"""The reader of each file format, by name. One module per format (:mod:`.jsonl`, :mod:`.json_list`,
:mod:`.parquet`, :mod:`.csv_table`, :mod:`.hf_dataset`), each with ``read(path, builder, batch_size) -> Loaded``
and ``take(path, state, idx)`` (the records at row positions ``idx``: a list of dicts or an Arrow table)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from tasksift.records import csv_table, hf_dataset, json_list, jsonl, parquet
from tasksift.records.readers import Loaded
from tasksift.records.view import ViewBuilder

#: ``take(path, state, idx)``: the records at ``idx`` as dicts (jsonl, json, memory) or as a table
Take = Callable[[Path | None, Any, np.ndarray], list[dict[str, Any]] | pa.Table]


class Format(NamedTuple):
    read: Callable[[Path, ViewBuilder, int], Loaded]
    take: Take


#: the reader of each file format :func:`tasksift.records.detect_format` names
READERS: dict[str, Format] = {
    "jsonl": Format(jsonl.read, jsonl.take),
    "json": Format(json_list.read, json_list.take),
    "parquet": Format(parquet.read, parquet.take),
    "csv": Format(csv_table.read, csv_table.take),
    "hf": Format(hf_dataset.read, hf_dataset.take),
}

__all__ = ["READERS", "Format", "Loaded", "Take"]
