"""What every format reader returns, and the batch helpers of the Arrow-backed formats (parquet, csv, HF)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import pyarrow as pa

from tasksift.records.view import ViewBuilder, Where


class Loaded(NamedTuple):
    """A format reader's result: the builder holding ids and text views, the sha256 of the input, what the
    format's ``take`` needs to fetch records again, and (formats that can) ``rows(start, stop)``, the records of
    a range of rows parsed again, for a streamed text column (:mod:`.column`)."""

    builder: ViewBuilder
    sha256: str
    state: Any = None
    rows: Callable[[int, int], list[dict[str, Any]]] | None = None


def needed_columns(builder: ViewBuilder, names: Sequence[str]) -> list[str] | None:
    """With an id field, ids do not hash the whole record, so only the fields the view uses need reading."""
    builder.resolve_default_text(names)
    if builder.id_field is None:
        return None
    wanted = [builder.id_field, builder.domain_field, builder.text_field, *builder.template_fields]
    return [name for name in names if name in wanted]


def text_columns(builder: ViewBuilder, names: Sequence[str]) -> list[str]:
    """The fields the text view reads (once the builder has settled it), in the file's order."""
    wanted = {builder.text_field, *builder.template_fields}
    return [name for name in names if name in wanted]


def rows_of(batch: pa.RecordBatch | pa.Table, builder: ViewBuilder, first: Where) -> list[dict[str, Any]]:
    """``batch.to_pylist()``, turning invalid UTF-8 in a string column into an InputError at its row."""
    try:
        return batch.to_pylist()
    except UnicodeDecodeError:
        for i in range(batch.num_rows):
            try:
                batch.slice(i, 1).to_pylist()
            except UnicodeDecodeError as e:
                where = first.shifted(i)
                raise builder.fail(f"{where.subject()} has a value that is not valid UTF-8", where,
                                   fix="re-encode the data as UTF-8") from e
        raise


def add_batches(batches: Any, builder: ViewBuilder, first: Where) -> None:
    """Add the records of each Arrow batch in turn; ``first`` is where the first record sits."""
    i = 0
    for batch in batches:
        for rec in rows_of(batch, builder, first.shifted(i)):
            builder.add(rec, first.shifted(i))
            i += 1

