"""Records in: :func:`load_records` for a file or ``save_to_disk`` directory, :func:`records_from_dicts` for
records already in memory.

A file is read in batches and only each record's id and text view (and its domain when asked) are kept.
Everything else stays on disk: :meth:`RecordSet.take` fetches chosen records again from the byte offset of
their line (jsonl) or their row position (parquet, csv, HF), so a large pool never sits in memory as Python
objects.

Every problem with the input raises :class:`~tasksift.util.errors.InputError` naming the file and the line (jsonl,
csv, malformed json) or the record's 0-based position (``record N``: json lists, parquet, HF datasets).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tasksift.records.formats import READERS, Take
from tasksift.records.recordset import RecordSet
from tasksift.records.view import ViewBuilder, Where, canonical_record
from tasksift.util.errors import InputError
from tasksift.util.io import to_jsonable

#: file extensions and the format each one means
EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
FORMATS = ("jsonl", "json", "parquet", "csv", "hf", "memory")


def load_records(path: str | Path, *, text_field: str | None = None, template: str | None = None,
                 id_field: str | None = None, domain_field: str | None = None,
                 batch_size: int = 10_000) -> RecordSet:
    """Read a records file in batches and return its ids and text views.

    ``text_field`` names the field holding the text; ``template`` (``str.format`` style, e.g.
    ``"{instruction}\\n{input}\\n{output}"``) builds it from several; with neither, field ``text`` is used.
    ``id_field`` names a field of unique ids; without it ids hash the record's content. ``domain_field``
    names a field whose value is kept as the record's domain. ``batch_size`` rows are converted to Python at a
    time (parquet, HF datasets).
    """
    p = Path(path)
    fmt = detect_format(p)
    builder = ViewBuilder(p, text_field=text_field, template=template, id_field=id_field,
                          domain_field=domain_field)
    reader = READERS[fmt]
    loaded = reader.read(p, builder, batch_size)
    return _record_set(loaded.builder, p, fmt, loaded.sha256, reader.take, loaded.state)


def records_from_dicts(records: Sequence[dict[str, Any]], *, text_field: str | None = None,
                       template: str | None = None, id_field: str | None = None,
                       domain_field: str | None = None) -> RecordSet:
    """A RecordSet over records already in memory (the Python API's lists of dicts), same rules as files.

    The list is kept by reference; ``take`` returns deep copies. ``file_sha256`` hashes the records' canonical
    JSON, one per line, so a manifest can still name its input. Every value must be one JSON can hold (numpy
    numbers and arrays, paths, sets and dates are converted), since the chosen records are written to
    ``selected.jsonl``: a record holding ``bytes`` (or another object) is refused here, before any work.
    """
    builder = ViewBuilder(None, text_field=text_field, template=template, id_field=id_field,
                          domain_field=domain_field)
    digest = hashlib.sha256()
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise InputError(f"record {i} is a {type(rec).__name__}, not a dict",
                             fix="pass records as dicts of field -> value")
        builder.add(rec, Where(index=i), check_surrogates=True)
        _check_writable(rec, i)
        digest.update(canonical_record(rec) + b"\n")
    return _record_set(builder, None, "memory", digest.hexdigest(), _take_in_memory, list(records))


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


def _take_in_memory(path: None, rows: list[dict[str, Any]], idx: np.ndarray) -> list[dict[str, Any]]:
    return [copy.deepcopy(rows[i]) for i in idx]


def _record_set(builder: ViewBuilder, path: Path | None, fmt: str, sha256: str, take: Take, state: Any) -> RecordSet:
    builder.check_not_empty()
    return RecordSet(path=path, format=fmt, ids=builder.ids, texts=builder.texts, domains=builder.domains,
                     id_rule=builder.id_rule, text_rule=builder.text_rule, file_sha256=sha256, _take=take,
                     _state=state)


def detect_format(path: Path) -> str:
    """The format of ``path`` from its extension, or ``hf`` for a ``save_to_disk`` directory."""
    if not path.exists():
        raise InputError("file not found", path=path, fix="check the path")
    if path.is_dir():
        if (path / "dataset_dict.json").exists():
            splits = sorted(p.name for p in path.iterdir() if p.is_dir())
            raise InputError(f"this is a DatasetDict with splits {splits}, not one dataset", path=path,
                             fix=f"point to one split, e.g. {path / (splits[0] if splits else 'train')}")
        if not (path / "state.json").exists():
            raise InputError("this directory is not a dataset written by datasets.save_to_disk", path=path,
                             fix="give a .jsonl, .json, .parquet or .csv file, or a save_to_disk directory")
        return "hf"
    fmt = EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"unknown records format '{path.suffix or '(no extension)'}'", path=path,
                         fix="use .jsonl, .json, .parquet, .csv or a datasets.save_to_disk directory")
    return fmt
