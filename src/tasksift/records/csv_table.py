"""``.csv``: streamed with a header line; record i (0-based) is line i + 2. Rows fetched by streaming it again.

Column types are inferred from the first block; when a later block does not fit (an int column that turns out
to hold words), that column is read as string and the file is read again from the start.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from tasksift.records.files import file_sha256, open_binary
from tasksift.records.readers import Loaded, add_batches
from tasksift.records.view import ViewBuilder, Where
from tasksift.util.errors import InputError

_CONVERSION = re.compile(r"In CSV column #(\d+): CSV conversion error to (\w+)")


def read(path: Path, builder: ViewBuilder, batch_size: int) -> Loaded:
    """The records and, as the state, the column types the read settled on."""
    sha = file_sha256(path)
    types: dict[str, pa.DataType] = {}
    start = builder.snapshot()
    while True:
        try:
            _stream(path, builder, types)
            return Loaded(builder, sha, types)
        except pa.ArrowInvalid as e:
            column = _column_to_widen(path, e, types)
            if column is None:
                raise _error(path, e) from e
            types[column] = pa.string()
            builder.restore(start)


def take(path: Path, types: dict[str, pa.DataType] | None, idx: np.ndarray) -> pa.Table:
    """Rows at ``idx``, streaming the csv again with the column types the load settled on."""
    unique, inverse = np.unique(idx, return_inverse=True)
    reader = _reader(path, types or {})
    pieces, start = [], 0
    for batch in reader:
        end = start + batch.num_rows
        lo, hi = np.searchsorted(unique, [start, end])
        if hi > lo:
            pieces.append(pa.Table.from_batches([batch.take(pa.array(unique[lo:hi] - start))]))
        start = end
        if hi == len(unique):
            break
    if not pieces:
        return reader.schema.empty_table()
    return pa.concat_tables(pieces).take(inverse)


def _reader(path: Path, types: dict[str, pa.DataType]) -> pacsv.CSVStreamingReader:
    return pacsv.open_csv(path, convert_options=pacsv.ConvertOptions(column_types=types))


def _stream(path: Path, builder: ViewBuilder, types: dict[str, pa.DataType]) -> None:
    reader = _reader(path, types)
    names = _names(path, reader)
    if any(pa.types.is_binary(f.type) for f in reader.schema):  # pyarrow infers binary for a column with invalid
        raise _utf8_error(path)  # UTF-8 in its first block
    builder.resolve_default_text(names)
    add_batches(reader, builder, Where(line=2))


def _column_to_widen(path: Path, error: pa.ArrowInvalid, types: dict[str, pa.DataType]) -> str | None:
    """The column whose inferred type a later block broke, if that is what ``error`` says."""
    match = _CONVERSION.search(str(error))
    if match is None or match.group(2) in ("string", "utf8"):
        return None
    names = _names(path, _reader(path, types))
    column = names[int(match.group(1))]
    return None if column in types else column


def _names(path: Path, reader: pacsv.CSVStreamingReader) -> list[str]:
    """The column names of the header line (InputError when the header is not valid UTF-8)."""
    try:
        return reader.schema.names
    except UnicodeDecodeError:
        raise _utf8_error(path) from None


def _error(path: Path, error: pa.ArrowInvalid) -> InputError:
    message = str(error)
    if "Empty CSV file" in message:
        return InputError(f"no records in {path}", path=path, fix="give a file with at least one record")
    if "invalid UTF8" in message:
        return _utf8_error(path)
    return InputError(f"cannot parse the csv: {message}", path=path,
                      fix="check quoting and that every row has as many columns as the header")


def _utf8_error(path: Path) -> InputError:
    """Find the first line that is not valid UTF-8 by scanning the bytes (newlines never split a character)."""
    with open_binary(path) as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return InputError("the line is not valid UTF-8", path=path, line=lineno,
                                  fix="re-encode the file as UTF-8")
    return InputError("the file is not valid UTF-8", path=path, fix="re-encode the file as UTF-8")
