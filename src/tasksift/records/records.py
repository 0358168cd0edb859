"""Records in, stable ids and a text view out.

:func:`load_records` reads a pool or target file (``.jsonl``, ``.json``, ``.parquet``, ``.csv`` or a directory
written by ``datasets.Dataset.save_to_disk``) in batches and keeps, per record, only its id and its text view
(and its domain when asked). Everything else stays on disk: :meth:`RecordSet.take` fetches chosen records again
from the byte offset of their line (jsonl) or their row position (parquet, csv, HF), so a large pool never sits
in memory as Python objects.

Ids are stable: the value of ``id_field`` when given, else the first 16 hex digits of the sha1 of the record's
canonical JSON. The k-th repeat (k >= 1) of identical content gets the suffix ``-k``, so identical records keep
distinct ids by position. The same record content gives the same id whatever the file format.

Null values render as the empty string in the text view (a text view that is empty is allowed); a record that
lacks the text field, a template field, the id field or the domain field altogether is an error.

Every problem with the input raises :class:`~tasksift.util.errors.InputError` naming the file and the line (jsonl,
csv, malformed json) or the record's 0-based position (``record N``: json lists, parquet, HF datasets).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import string
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tasksift.util.errors import InputError

#: file extensions and the format each one means
EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
FORMATS = ("jsonl", "json", "parquet", "csv", "hf", "memory")

_BOM = b"\xef\xbb\xbf"
_HASH_CHUNK = 1 << 20
_CSV_CONVERSION = re.compile(r"In CSV column #(\d+): CSV conversion error to (\w+)")


# ---------------------------------------------------------------------------------------------------------
# The record set
# ---------------------------------------------------------------------------------------------------------
@dataclass(eq=False, repr=False)
class RecordSet:
    """Ids and text views of the records of one file, and what is needed to fetch records again.

    ``id_rule`` is ``"field:<name>"`` or ``"content-sha1"``; ``text_rule`` is ``"field:<name>"`` or
    ``"template:<template>"``; ``file_sha256`` hashes the file's bytes (the ``.arrow`` files of an HF dataset
    directory, the canonical JSON of in-memory records) and goes into the run's manifest.
    """

    path: Path | None
    format: str
    ids: list[str]
    texts: list[str]
    domains: list[str] | None
    id_rule: str
    text_rule: str
    file_sha256: str
    _offsets: np.ndarray | None = field(default=None)
    _csv_types: dict[str, pa.DataType] | None = field(default=None)
    _rows: list[dict[str, Any]] | None = field(default=None)
    _dataset: Any = field(default=None)

    @property
    def n(self) -> int:
        return len(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"RecordSet(path={str(self.path)!r}, format={self.format!r}, n={self.n}, id_rule={self.id_rule!r})"

    def take(self, indices: Sequence[int] | np.ndarray) -> list[dict[str, Any]]:
        """The original records at ``indices`` (row positions), parsed, in the order of ``indices``.

        jsonl lines are re-read at their saved byte offsets and parsed again, so each record comes back exactly
        as written (same keys, same key order, same values). Each position gets its own dict.
        """
        idx = self._check_indices(indices)
        if self.format == "jsonl":
            return self._take_jsonl(idx)
        if self.format == "json":
            rows = _parse_json_list(self.path)[0]
            return [copy.deepcopy(rows[i]) for i in idx]
        if self.format == "memory":
            return [copy.deepcopy(self._rows[i]) for i in idx]
        return self.take_table(idx).to_pylist()

    def take_table(self, indices: Sequence[int] | np.ndarray) -> pa.Table:
        """The same rows as :meth:`take`, as an Arrow table (used to write ``selected.parquet``)."""
        idx = self._check_indices(indices)
        if self.format == "parquet":
            return _take_parquet(self.path, idx)
        if self.format == "csv":
            return _take_csv(self.path, idx, self._csv_types or {})
        if self.format == "hf":
            return self._hf_dataset().with_format("arrow")[idx.tolist()]
        return pa.Table.from_pylist(self.take(idx))

    # -- helpers -------------------------------------------------------------------------------------------
    def _check_indices(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= self.n):
            bad = int(idx[(idx < 0) | (idx >= self.n)][0])
            raise IndexError(f"row {bad} is outside the {self.n} records of {self.path}")
        return idx

    def _take_jsonl(self, idx: np.ndarray) -> list[dict[str, Any]]:
        unique, inverse = np.unique(idx, return_inverse=True)
        lines: list[bytes] = []
        with open(self.path, "rb") as f:
            for i in unique:  # increasing offsets: one forward pass over the file
                f.seek(int(self._offsets[i]))
                lines.append(f.readline())
        return [json.loads(lines[j]) for j in inverse]

    def _hf_dataset(self) -> Any:
        if self._dataset is None:
            self._dataset = _load_hf_dataset(self.path)
        return self._dataset


# ---------------------------------------------------------------------------------------------------------
# Text view, ids and domains, one record at a time
# ---------------------------------------------------------------------------------------------------------
def compile_template(template: str) -> tuple[str, list[str]]:
    """Turn the CLI's two-character ``\\n`` and ``\\t`` into newline and tab, and list the fields used.

    Only named fields are allowed (``{instruction}``, ``{meta[lang]}``, ``{score:.2f}``); the name before any
    ``.`` or ``[`` is the record field that must exist.
    """
    text = template.replace("\\n", "\n").replace("\\t", "\t")
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as e:
        raise InputError(f"template {template!r} is not a valid format string: {e}",
                         fix='write fields in braces, e.g. "{instruction}\\n{output}"; double literal braces') from e
    for _, name, _, _ in parsed:
        if name is None:
            continue
        base = re.split(r"[.\[]", name, maxsplit=1)[0]
        if base == "" or base.isdigit():
            raise InputError(f"template {template!r} has a positional field {{{name}}}",
                             fix="name the record field in the braces, e.g. {instruction}")
        if base not in names:
            names.append(base)
    if not names:
        raise InputError(f"template {template!r} uses no record field", fix="put field names in braces")
    return text, names


class _Where:
    """Where a record sits in its file: a line number (jsonl, csv) or a 0-based record position."""

    __slots__ = ("line", "index")

    def __init__(self, line: int | None = None, index: int | None = None) -> None:
        self.line = line
        self.index = index

    def subject(self) -> str:
        return "the record" if self.line is not None else f"record {self.index}"

    def position(self) -> int:
        return self.line if self.line is not None else self.index

    def describe(self, position: int) -> str:
        """Name another position of the same file the way this one is named (for "first at line 3")."""
        return f"line {position}" if self.line is not None else f"record {position}"


class _ViewBuilder:
    """Computes and keeps the id, text view and domain of each record, raising InputError on bad records."""

    def __init__(self, path: Path | None, *, text_field: str | None, template: str | None,
                 id_field: str | None, domain_field: str | None) -> None:
        if text_field is not None and template is not None:
            raise InputError("give either a text field or a template, not both",
                             fix="drop --text-field or --template")
        self._settings = {"text_field": text_field, "template": template, "id_field": id_field,
                          "domain_field": domain_field}
        self.label = str(path) if path is not None else "<records>"
        self.path = path
        self.text_field = text_field
        self.template: str | None = None
        self.template_fields: list[str] = []
        if template is not None:
            self.template, self.template_fields = compile_template(template)
            self.text_rule = f"template:{template}"
        else:
            self.text_rule = f"field:{text_field}" if text_field is not None else ""
        self.id_field = id_field
        self.domain_field = domain_field
        self.ids: list[str] = []
        self.texts: list[str] = []
        self.domains: list[str] | None = [] if domain_field is not None else None
        self._seen: dict[str, int] = {}  # id -> its first line or position; content hash -> repeat count

    def fresh(self) -> _ViewBuilder:
        """A new, empty builder with the same settings (to read a file again from the start)."""
        return _ViewBuilder(self.path, **self._settings)

    @property
    def id_rule(self) -> str:
        return f"field:{self.id_field}" if self.id_field is not None else "content-sha1"

    def fail(self, what: str, where: _Where, fix: str | None = None) -> InputError:
        return InputError(what, path=self.path, line=where.line, fix=fix)

    def resolve_default_text(self, fields: Iterable[str]) -> None:
        """Without a text field or template, use ``text`` if the first record has it; else tell the user."""
        if self.template is not None or self.text_field is not None:
            return
        fields = list(fields)
        if "text" not in fields:
            shown = ", ".join(fields[:30]) + (", ..." if len(fields) > 30 else "")
            raise InputError(f"records have no 'text' field (fields found in the first record: {shown})",
                             path=self.path,
                             fix='pass --text-field NAME or --template "{field1}\\n{field2}"')
        self.text_field = "text"
        self.text_rule = "field:text"

    def add(self, rec: dict[str, Any], where: _Where, *, check_surrogates: bool = False) -> None:
        if not self.texts:
            self.resolve_default_text(rec.keys())
        text = self._text(rec, where)
        if check_surrogates:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:
                raise self.fail(f"the text of {where.subject()} is not valid UTF-8 (a lone surrogate \\u escape)",
                                where,
                                fix="fix or drop this record") from e
        if self.domains is not None:
            self.domains.append(self._required(rec, self.domain_field, "domain", where))
        self.ids.append(self._id(rec, where))
        self.texts.append(text)

    def _text(self, rec: dict[str, Any], where: _Where) -> str:
        if self.template is None:
            if self.text_field not in rec:
                raise self.fail(f"{where.subject()} has no text field '{self.text_field}'", where,
                                fix="pass --text-field or --template naming fields every record has")
            value = rec[self.text_field]
            return value if isinstance(value, str) else "" if value is None else str(value)
        for name in self.template_fields:
            if name not in rec:
                raise self.fail(f"{where.subject()} has no field '{name}' used by the template", where,
                                fix="use only fields every record has in --template")
        values = {name: "" if rec[name] is None else rec[name] for name in self.template_fields}
        try:
            return self.template.format_map(values)
        except (KeyError, IndexError, AttributeError, ValueError, TypeError) as e:
            raise self.fail(f"the template cannot be filled from {where.subject()}: {e!r}", where,
                            fix="check the template's fields and format specs") from e

    def _required(self, rec: dict[str, Any], name: str, role: str, where: _Where) -> str:
        value = rec.get(name)
        if value is None:
            missing = "has no" if name not in rec else "has a null"
            raise self.fail(f"{where.subject()} {missing} {role} field '{name}'", where,
                            fix=f"give every record a value in '{name}' or choose another {role} field")
        return value if isinstance(value, str) else str(value)

    def _id(self, rec: dict[str, Any], where: _Where) -> str:
        if self.id_field is not None:
            rid = self._required(rec, self.id_field, "id", where)
            first = self._seen.setdefault(rid, where.position())
            if first != where.position():
                raise self.fail(f"{where.subject()} repeats id {rid!r} of field '{self.id_field}' "
                                f"(first at {where.describe(first)})", where,
                                fix="ids must be unique; pick another --id-field or drop it to hash content")
            return rid
        digest = content_hash(rec)
        k = self._seen.get(digest, 0)
        self._seen[digest] = k + 1
        return digest if k == 0 else f"{digest}-{k}"

    def result(self, *, path: Path | None, fmt: str, sha256: str, **private: Any) -> RecordSet:
        if not self.ids:
            raise InputError(f"no records in {self.label}", path=self.path,
                             fix="give a file with at least one record")
        return RecordSet(path=path, format=fmt, ids=self.ids, texts=self.texts, domains=self.domains,
                         id_rule=self.id_rule, text_rule=self.text_rule, file_sha256=sha256, **private)


def content_hash(rec: dict[str, Any]) -> str:
    """First 16 hex digits of the sha1 of the record's canonical JSON (sorted keys, UTF-8)."""
    canonical = json.dumps(rec, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha1(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------------------
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
    builder = _ViewBuilder(p, text_field=text_field, template=template, id_field=id_field,
                           domain_field=domain_field)
    if fmt == "jsonl":
        offsets, sha = _read_jsonl(p, builder)
        return builder.result(path=p, fmt=fmt, sha256=sha, _offsets=offsets)
    if fmt == "json":
        rows, sha = _parse_json_list(p)
        for i, rec in enumerate(rows):
            builder.add(rec, _Where(index=i), check_surrogates=True)
        del rows
        return builder.result(path=p, fmt=fmt, sha256=sha)
    if fmt == "parquet":
        sha = file_sha256(p)  # first: an unreadable file fails here with a clear message
        _read_parquet(p, builder, batch_size)
        return builder.result(path=p, fmt=fmt, sha256=sha)
    if fmt == "csv":
        sha = file_sha256(p)
        builder, types = _read_csv(p, builder)
        return builder.result(path=p, fmt=fmt, sha256=sha, _csv_types=types)
    dataset = _read_hf(p, builder, batch_size)
    return builder.result(path=p, fmt=fmt, sha256=hf_dir_sha256(p), _dataset=dataset)


def records_from_dicts(records: Sequence[dict[str, Any]], *, text_field: str | None = None,
                       template: str | None = None, id_field: str | None = None,
                       domain_field: str | None = None) -> RecordSet:
    """A RecordSet over records already in memory (the Python API's lists of dicts), same rules as files.

    The list is kept by reference; ``take`` returns deep copies. ``file_sha256`` hashes the records' canonical
    JSON, one per line, so a manifest can still name its input.
    """
    builder = _ViewBuilder(None, text_field=text_field, template=template, id_field=id_field,
                           domain_field=domain_field)
    digest = hashlib.sha256()
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise InputError(f"record {i} is a {type(rec).__name__}, not a dict",
                             fix="pass records as dicts of field -> value")
        builder.add(rec, _Where(index=i), check_surrogates=True)
        canonical = json.dumps(rec, sort_keys=True, ensure_ascii=False, default=str)
        digest.update(canonical.encode("utf-8", "surrogatepass") + b"\n")
    return builder.result(path=None, fmt="memory", sha256=digest.hexdigest(), _rows=list(records))


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


# ---------------------------------------------------------------------------------------------------------
# Hashes
# ---------------------------------------------------------------------------------------------------------
def _open_binary(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as e:
        raise InputError(f"cannot read the file: {e.strerror or e}", path=path,
                         fix="check the path and its permissions") from e


def file_sha256(path: Path) -> str:
    """sha256 of the file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with _open_binary(path) as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hf_dir_sha256(path: Path) -> str:
    """sha256 over the names and bytes of a dataset directory's ``.arrow`` files, in name order."""
    digest = hashlib.sha256()
    for arrow in sorted(path.glob("*.arrow")):
        digest.update(arrow.name.encode() + b"\0")
        with _open_binary(arrow) as f:
            while chunk := f.read(_HASH_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------------
# jsonl and json
# ---------------------------------------------------------------------------------------------------------
def _read_jsonl(path: Path, builder: _ViewBuilder) -> tuple[np.ndarray, str]:
    """One JSON object per line; blank lines skipped. Returns each record line's byte offset and the sha256."""
    offsets = array("q")
    digest = hashlib.sha256()
    pos = 0
    with _open_binary(path) as f:
        for lineno, raw in enumerate(f, start=1):
            digest.update(raw)
            start, pos = pos, pos + len(raw)
            body = raw
            if lineno == 1 and raw.startswith(_BOM):
                body, start = raw[len(_BOM):], start + len(_BOM)
            if not body.strip():
                continue
            builder.add(_parse_jsonl_line(body, path, lineno), _Where(line=lineno),
                        check_surrogates=b"\\u" in body)
            offsets.append(start)
    return np.frombuffer(offsets, dtype=np.int64).copy(), digest.hexdigest()


def _parse_jsonl_line(body: bytes, path: Path, lineno: int) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"the line is not valid UTF-8 (byte {e.start + 1})", path=path, line=lineno,
                         fix="re-encode the file as UTF-8") from e
    try:
        rec = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"the line is not valid JSON: {e.msg} at column {e.colno}", path=path, line=lineno,
                         fix="a .jsonl file holds one JSON object per line") from e
    if not isinstance(rec, dict):
        raise InputError(f"the line is a JSON {_json_type(rec)}, not an object", path=path, line=lineno,
                         fix='each line must be one object like {"text": ...}')
    return rec


def _json_type(value: Any) -> str:
    names = {list: "list", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _parse_json_list(path: Path) -> tuple[list[dict[str, Any]], str]:
    """Parse a ``.json`` file holding a list of objects (read whole: JSON lists cannot be streamed)."""
    with _open_binary(path) as f:
        data = f.read()
    sha = hashlib.sha256(data).hexdigest()
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError("the file is not valid UTF-8", path=path, line=data.count(b"\n", 0, e.start) + 1,
                         fix="re-encode the file as UTF-8") from e
    if not text.strip():
        raise InputError(f"no records in {path}", path=path, fix="give a file with at least one record")
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"the file is not valid JSON: {e.msg} at column {e.colno}", path=path, line=e.lineno,
                         fix="a .json file holds one list of objects; use .jsonl for one object per line") from e
    if not isinstance(rows, list):
        raise InputError(f"the file holds a JSON {_json_type(rows) if not isinstance(rows, dict) else 'object'}, "
                         "not a list of records", path=path,
                         fix="write a list [{...}, {...}] or use .jsonl with one object per line")
    for i, rec in enumerate(rows):
        if not isinstance(rec, dict):
            raise InputError(f"record {i} is a JSON {_json_type(rec)}, not an object", path=path,
                             fix='each record must be an object like {"text": ...}')
    return rows, sha


# ---------------------------------------------------------------------------------------------------------
# Arrow-backed formats: parquet, csv, HF datasets
# ---------------------------------------------------------------------------------------------------------
def _needed_columns(builder: _ViewBuilder, names: Sequence[str]) -> list[str] | None:
    """With an id field, ids do not hash the whole record, so only the fields the view uses need reading."""
    builder.resolve_default_text(names)
    if builder.id_field is None:
        return None
    wanted = [builder.id_field, builder.domain_field, builder.text_field, *builder.template_fields]
    return [name for name in names if name in wanted]


def _rows_of(batch: pa.RecordBatch | pa.Table, builder: _ViewBuilder, first: _Where) -> list[dict[str, Any]]:
    """``batch.to_pylist()``, turning invalid UTF-8 in a string column into an InputError at its row."""
    try:
        return batch.to_pylist()
    except UnicodeDecodeError:
        for i in range(batch.num_rows):
            try:
                batch.slice(i, 1).to_pylist()
            except UnicodeDecodeError as e:
                where = _Where(line=first.line + i) if first.line is not None else _Where(index=first.index + i)
                raise builder.fail(f"{where.subject()} has a value that is not valid UTF-8", where,
                                   fix="re-encode the data as UTF-8") from e
        raise


def _read_parquet(path: Path, builder: _ViewBuilder, batch_size: int) -> None:
    try:
        pfile = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"not a readable parquet file: {e}", path=path,
                         fix="write it with pyarrow or pandas to_parquet") from e
    with pfile:
        columns = _needed_columns(builder, pfile.schema_arrow.names)
        i = 0
        for batch in pfile.iter_batches(batch_size=batch_size, columns=columns):
            for rec in _rows_of(batch, builder, _Where(index=i)):
                builder.add(rec, _Where(index=i))
                i += 1


def _take_parquet(path: Path, idx: np.ndarray) -> pa.Table:
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


def _csv_reader(path: Path, types: dict[str, pa.DataType]) -> pacsv.CSVStreamingReader:
    return pacsv.open_csv(path, convert_options=pacsv.ConvertOptions(column_types=types))


def _read_csv(path: Path, builder: _ViewBuilder) -> tuple[_ViewBuilder, dict[str, pa.DataType]]:
    """Stream the csv; header is line 1, record i (0-based) is line i + 2.

    Column types are inferred from the first block; when a later block does not fit (an int column that
    turns out to hold words), that column is read as string and the file is read again from the start.
    """
    types: dict[str, pa.DataType] = {}
    while True:
        fresh = builder.fresh()
        try:
            _stream_csv(path, fresh, types)
            return fresh, types
        except pa.ArrowInvalid as e:
            column = _csv_column_to_widen(path, e, types)
            if column is None:
                raise _csv_error(path, e) from e
            types[column] = pa.string()


def _stream_csv(path: Path, builder: _ViewBuilder, types: dict[str, pa.DataType]) -> None:
    reader = _csv_reader(path, types)
    binary = [f.name for f in reader.schema if pa.types.is_binary(f.type)]
    if binary:  # pyarrow infers binary for a column with invalid UTF-8 in its first block
        raise _csv_utf8_error(path)
    builder.resolve_default_text(reader.schema.names)
    i = 0
    for batch in reader:
        for rec in _rows_of(batch, builder, _Where(line=i + 2)):
            builder.add(rec, _Where(line=i + 2))
            i += 1


def _csv_column_to_widen(path: Path, error: pa.ArrowInvalid, types: dict[str, pa.DataType]) -> str | None:
    """The column whose inferred type a later block broke, if that is what ``error`` says."""
    match = _CSV_CONVERSION.search(str(error))
    if match is None or match.group(2) in ("string", "utf8"):
        return None
    names = _csv_reader(path, types).schema.names
    column = names[int(match.group(1))]
    return None if column in types else column


def _csv_error(path: Path, error: pa.ArrowInvalid) -> InputError:
    message = str(error)
    if "Empty CSV file" in message:
        return InputError(f"no records in {path}", path=path, fix="give a file with at least one record")
    if "invalid UTF8" in message:
        return _csv_utf8_error(path)
    return InputError(f"cannot parse the csv: {message}", path=path,
                      fix="check quoting and that every row has as many columns as the header")


def _csv_utf8_error(path: Path) -> InputError:
    """Find the first line that is not valid UTF-8 by scanning the bytes (newlines never split a character)."""
    with _open_binary(path) as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return InputError("the line is not valid UTF-8", path=path, line=lineno,
                                  fix="re-encode the file as UTF-8")
    return InputError("the file is not valid UTF-8", path=path, fix="re-encode the file as UTF-8")


def _take_csv(path: Path, idx: np.ndarray, types: dict[str, pa.DataType]) -> pa.Table:
    """Rows at ``idx``, streaming the csv again with the column types the load settled on."""
    unique, inverse = np.unique(idx, return_inverse=True)
    reader = _csv_reader(path, types)
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


def _load_hf_dataset(path: Path) -> Any:
    import datasets

    try:
        dataset = datasets.load_from_disk(str(path))
    except Exception as e:  # datasets raises many kinds; all of them mean "cannot read this directory"
        raise InputError(f"cannot load the dataset directory: {e}", path=path,
                         fix="give a directory written by datasets.Dataset.save_to_disk") from e
    if isinstance(dataset, datasets.DatasetDict):
        raise InputError(f"this is a DatasetDict with splits {sorted(dataset)}, not one dataset", path=path,
                         fix="point to one split's directory")
    return dataset


def _read_hf(path: Path, builder: _ViewBuilder, batch_size: int) -> Any:
    dataset = _load_hf_dataset(path)
    columns = _needed_columns(builder, dataset.column_names)
    view = dataset.select_columns(columns) if columns is not None else dataset
    i = 0
    for table in view.with_format("arrow").iter(batch_size=batch_size):
        for rec in _rows_of(table, builder, _Where(index=i)):
            builder.add(rec, _Where(index=i))
            i += 1
    return dataset
