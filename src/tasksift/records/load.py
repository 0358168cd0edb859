"""Records in: :func:`load_records` for files, folders, hub datasets and in-memory datasets,
:func:`records_from_dicts` for lists of dicts.

A source is read in batches (or streamed) and only each record's id and text view (and its domain when asked)
are kept. Everything else stays where it is: :meth:`RecordSet.take` fetches chosen records again from the byte
offset of their line (jsonl) or their row position (parquet, csv, HF), so a large pool never sits in memory as
Python objects. A large jsonl, parquet or dataset-directory input (above ``$TASKSIFT_STREAM_RECORDS_BYTES``,
256 MiB by default, or with ``stream=True``) does not keep its texts either: they come as a
:class:`~tasksift.records.column.TextColumn` that reads them again on demand, and ids are kept compactly
(:mod:`.ids`).

Every problem with the input raises :class:`~tasksift.util.errors.InputError` naming the file and the line (jsonl,
csv, malformed json) or the record's 0-based position (``record N``: json lists, parquet, HF datasets); for a
source of several files, the file is the one holding the record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tasksift.records import memory, multi
from tasksift.records.column import TextColumn, streams
from tasksift.records.formats import READERS, Take
from tasksift.records.hf_dataset import HUB_PREFIX, load_hub
from tasksift.records.readers import Loaded
from tasksift.records.recordset import RecordSet
from tasksift.records.sources import EXTENSIONS, detect_format, input_files
from tasksift.records.view import ViewBuilder

FORMATS = ("jsonl", "json", "parquet", "csv", "hf", "memory")
#: in-memory objects (:func:`tasksift.records.memory.kind_of`): reader, row fetcher, format name
_IN_MEMORY: dict[str, tuple[Callable[[Any, ViewBuilder, int], Loaded], Take, str]] = {
    "dataset": (memory.read_dataset, memory.take_dataset, "hf"),
    "iterable": (memory.read_iterable, memory.take_iterable, "memory"),
    "dataframe": (memory.read_frame, memory.take_frame, "memory"),
}


def load_records(source: Any, *, text_field: str | None = None, template: str | None = None,
                 id_field: str | None = None, domain_field: str | None = None, text_view: str | None = None,
                 chat_model: str | Path | None = None, split: str | None = None, subset: str | None = None,
                 batch_size: int = 10_000, stream: bool | None = None) -> RecordSet:
    """Read records and return their ids and text views.

    ``source`` is a file (jsonl, also ``.jsonl.gz`` / ``.jsonl.zst``; json; parquet; csv), a glob or a list of
    files (:mod:`.sources`), a ``save_to_disk`` directory, a folder laid out like a hub dataset (``split`` and
    ``subset`` choose its files), ``hf://org/name`` (from the local Hugging Face cache), or a
    ``datasets.Dataset``, ``datasets.IterableDataset`` or ``pandas.DataFrame`` (:mod:`.memory`).

    ``text_field`` names the field holding the text; ``template`` (``str.format`` style, e.g.
    ``"{instruction}\\n{input}\\n{output}"``) builds it from several; ``text_view="chat"`` reads a conversation
    (:mod:`.chat`, rendered with the chat template of ``chat_model`` when it is a local directory with one);
    with none, field ``text`` is used, or the conversation when records have no ``text`` but ``messages`` or
    ``conversations``. ``id_field`` names a field of unique ids; without it ids hash the record's content.
    ``domain_field`` names a field whose value is kept as the record's domain. ``batch_size`` rows are converted
    to Python at a time (parquet, HF datasets, DataFrames). ``stream``: keep the texts in the input, not in
    memory (:mod:`.column`; jsonl, parquet and dataset directories, others load a list whatever is asked);
    ``None``: when the input is larger than ``$TASKSIFT_STREAM_RECORDS_BYTES`` (256 MiB by default).
    """
    view = {"text_field": text_field, "template": template, "id_field": id_field, "domain_field": domain_field,
            "text_view": text_view, "chat_model": chat_model}

    def again(**other: Any) -> RecordSet:
        return load_records(source, **{**view, **other}, split=split, subset=subset, batch_size=batch_size,
                            stream=stream)

    kind = memory.kind_of(source)
    if kind is not None:
        read, take, fmt = _IN_MEMORY[kind]
        return _record_set(read(source, ViewBuilder(None, **view), batch_size), None, fmt, take, again)
    if isinstance(source, str) and source.startswith(HUB_PREFIX):
        dataset = load_hub(source, split, subset)
        loaded = memory.read_dataset(dataset, ViewBuilder(source, **view), batch_size)  # type: ignore[arg-type]
        return _record_set(loaded, None, "hf", memory.take_dataset, again)
    files = input_files(source, split, subset)
    if len(files) == 1 and isinstance(source, str | Path):
        fmt = detect_format(files[0])
        builder = ViewBuilder(files[0], **view, streamed=streams(stream, fmt, files))
        loaded = READERS[fmt].read(files[0], builder, batch_size)
        return _record_set(loaded, files[0], fmt, READERS[fmt].take, again)
    fmt = multi.common_format(files)
    loaded = multi.read(files, fmt, ViewBuilder(files[0], **view, streamed=streams(stream, fmt, files)),
                        batch_size)
    same = isinstance(source, str | Path) and split is None and subset is None
    return _record_set(loaded, Path(source) if same else None, fmt, multi.take, again)


def records_from_dicts(records: Sequence[dict[str, Any]], *, text_field: str | None = None,
                       template: str | None = None, id_field: str | None = None,
                       domain_field: str | None = None, text_view: str | None = None,
                       chat_model: str | Path | None = None) -> RecordSet:
    """A RecordSet over records already in memory (the Python API's lists of dicts), same rules as files.

    The list is kept by reference; ``take`` returns deep copies. ``file_sha256`` hashes the records' canonical
    JSON, one per line, so a manifest can still name its input. Every value must be one JSON can hold (numpy
    numbers and arrays, paths, sets and dates are converted), since the chosen records are written to
    ``selected.jsonl``: a record holding ``bytes`` (or another object) is refused here, before any work.
    """
    view = {"text_field": text_field, "template": template, "id_field": id_field, "domain_field": domain_field,
            "text_view": text_view, "chat_model": chat_model}

    def again(**other: Any) -> RecordSet:
        return records_from_dicts(records, **{**view, **other})

    loaded = memory.read_dicts(records, ViewBuilder(None, **view))
    return _record_set(loaded, None, "memory", memory.take_dicts, again)


def _record_set(loaded: Loaded, path: Path | None, fmt: str, take: Take,
                again: Callable[..., RecordSet]) -> RecordSet:
    builder = loaded.builder
    builder.check_not_empty()
    builder.finish()
    texts: Sequence[str] | None = builder.texts
    if texts is None:
        assert loaded.rows is not None, f"{fmt} files cannot be streamed"
        texts = TextColumn(len(builder.ids), loaded.rows, builder.text_of, source=builder.label)
    return RecordSet(path=path, format=fmt, ids=builder.ids, texts=texts, domains=builder.domains,
                     id_rule=builder.id_rule, text_rule=builder.text_rule, file_sha256=loaded.sha256, _take=take,
                     _state=loaded.state, _again=again)


__all__ = ["EXTENSIONS", "FORMATS", "detect_format", "load_records", "records_from_dicts"]
