"""Exports of a selection that trainers load as they are (``tasksift select --export``).

Each format is one small writer, chosen from :data:`WRITERS` by name; all write into ``export/`` inside the
run folder (the run folder is written whole in a temporary sibling and swapped in, so the exports are part of
the run or absent):

- ``jsonl``: ``export/records.jsonl``, the chosen records with ``_id``, ``_rank`` and ``_weight``;
- ``parquet``: ``export/records.parquet``, the same rows;
- ``hf``: ``export/hf/``, a ``datasets`` ``save_to_disk`` folder of the same rows (``load_from_disk``);
- ``messages``: ``export/messages.jsonl``, ``{"messages": [{"role", "content"}, ...]}`` per row, the chat
  format TRL's SFT trainer reads;
- ``alpaca``: ``export/alpaca.jsonl`` (``instruction``, ``input``, ``output``, ``system``, ``history``) and
- ``sharegpt``: ``export/sharegpt.jsonl`` (``conversations`` of ``{"from": "human"|"gpt", "value"}``,
  ``system``), each with its entry in ``export/dataset_info.json`` for LLaMA-Factory (``dataset_dir`` is the
  ``export/`` folder, the dataset names are ``tasksift_alpaca`` and ``tasksift_sharegpt``).

Every row keeps ``_id``, ``_rank`` and ``_weight``. The chat formats read each record's conversation from the
first shape it has: a ``messages`` list of ``{role, content}``, a ShareGPT ``conversations`` list, or a prompt
and a response field (``instruction`` [+ ``input``] / ``output``, ``prompt`` / ``completion`` or ``response``,
``question`` / ``answer``, ``query`` / ``response``, ``input`` / ``output``), with an optional ``system`` string
and an Alpaca ``history`` of ``[prompt, response]`` pairs. An Alpaca instruction and its input are joined by a
newline, as LLaMA-Factory joins them.

With ``repeat_weights`` every chosen example is written ``weight`` times in a row (weights are training
counts, so they must be whole numbers) with ``_weight`` 1, for trainers that ignore weights: the row count is
the sum of the weights. The rows of ``parquet`` and ``hf`` are gathered in memory before they are written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from tasksift.records import RecordSet
from tasksift.selection.writers import WRITE_CHUNK, _json_line, _with_extras, write_parquet_atomic
from tasksift.util.errors import InputError
from tasksift.util.io import atomic_write, write_json_atomic

if TYPE_CHECKING:
    from tasksift.selection.selection import Selection

#: the folder of the run folder the exports are written in
EXPORT_DIR = "export"
#: LLaMA-Factory's dataset registry, beside the alpaca and sharegpt files
DATASET_INFO = "dataset_info.json"
#: pool formats whose records come back as Arrow tables, with their stored types
TABLE_FORMATS = ("parquet", "hf")
#: prompt and response fields a record may hold, in the order they are looked for
PAIR_FIELDS = (("instruction", "output"), ("prompt", "completion"), ("prompt", "response"), ("question", "answer"),
               ("query", "response"), ("input", "output"))
#: ShareGPT speakers as chat roles, and back
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
SHAREGPT_SPEAKERS = {"user": "human", "assistant": "gpt"}
_CHAT_FIX = ("give records with instruction/input/output, prompt/completion, question/answer or a messages list, "
             "or export jsonl, parquet or hf")


@dataclass
class Rows:
    """The rows an export writes: the chosen examples in rank order (each ``weight`` times with
    ``repeat_weights``), and the pool records to fetch them from."""

    selection: Selection
    records: RecordSet
    positions: np.ndarray
    weights: np.ndarray

    @classmethod
    def of(cls, selection: Selection, records: RecordSet, repeat_weights: bool = False) -> Rows:
        if not repeat_weights:
            return cls(selection, records, np.arange(len(selection)), selection.weights)
        counts = np.rint(selection.weights)
        if not np.allclose(selection.weights, counts) or np.any(counts < 0):
            raise InputError("--repeat-weights needs whole-number weights, and this method gave fractional ones",
                             fix="export without --repeat-weights and let the trainer read _weight")
        positions = np.repeat(np.arange(len(selection)), counts.astype(np.int64))
        return cls(selection, records, positions, np.ones(len(positions)))

    def __len__(self) -> int:
        return len(self.positions)

    def chunks(self) -> Iterator[tuple[np.ndarray, list[str], np.ndarray, np.ndarray]]:
        """``(pool rows, ids, ranks, weights)`` of at most :data:`WRITE_CHUNK` rows at a time."""
        for start in range(0, len(self.positions), WRITE_CHUNK):
            pos = self.positions[start:start + WRITE_CHUNK]
            yield (self.selection.indices[pos], [self.selection.ids[p] for p in pos], self.selection.ranks[pos],
                   self.weights[start:start + WRITE_CHUNK])

    def dicts(self) -> Iterator[dict[str, Any]]:
        """Each row as the pool record with ``_id``, ``_rank`` and ``_weight``."""
        for rows, ids, ranks, weights in self.chunks():
            for rec, rid, rank, weight in zip(self.records.take(rows), ids, ranks, weights, strict=True):
                yield {**rec, "_id": rid, "_rank": int(rank), "_weight": float(weight)}

    def _table(self, rows: np.ndarray) -> pa.Table:
        """Pool records as a table: as stored for a columnar pool; with every field any record has (not only
        the first record's) for the others."""
        if self.records.format in TABLE_FORMATS:
            return self.records.take_table(rows)
        return pa.Table.from_struct_array(pa.array(self.records.take(rows)))

    def table(self) -> pa.Table:
        """All rows as one Arrow table, ``_id``, ``_rank`` and ``_weight`` last."""
        try:
            parts = [_with_extras(self._table(rows), ids, ranks, weights)
                     for rows, ids, ranks, weights in self.chunks()]
            return pa.concat_tables(parts, promote_options="default") if parts else pa.table({})
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise InputError(f"the chosen records do not make one table: {err}",
                             fix="give each field one type in every record, or export jsonl") from None


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)


def _from_list(turns: Sequence[Any], role_key: str, content_key: str,
               roles: Mapping[str, str] | None) -> list[dict[str, str]]:
    out = []
    for turn in turns:
        if not isinstance(turn, Mapping) or role_key not in turn or content_key not in turn:
            raise ValueError(f"a turn is not an object with {role_key!r} and {content_key!r}")
        role = _text(turn[role_key])
        out.append({"role": roles.get(role, role) if roles else role, "content": _text(turn[content_key])})
    return out


def _history(value: Any) -> list[dict[str, str]]:
    """An Alpaca ``history`` (``[[prompt, response], ...]``) as chat turns."""
    out = []
    for pair in value or []:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise ValueError("its history is not a list of [prompt, response] pairs")
        out += [{"role": "user", "content": _text(pair[0])}, {"role": "assistant", "content": _text(pair[1])}]
    return out


def to_messages(record: Mapping[str, Any]) -> list[dict[str, str]]:
    """The record as chat messages ``[{"role", "content"}, ...]`` (see the module docstring for the shapes
    read); ValueError when it has none of them."""
    if isinstance(record.get("messages"), list):
        return _from_list(record["messages"], "role", "content", None)
    if isinstance(record.get("conversations"), list):
        return _from_list(record["conversations"], "from", "value", SHAREGPT_ROLES)
    for prompt_field, response_field in PAIR_FIELDS:
        if prompt_field in record and response_field in record:
            parts = [_text(record[prompt_field])]
            if prompt_field == "instruction":
                parts.append(_text(record.get("input")))
            system = _text(record.get("system"))
            return [*([{"role": "system", "content": system}] if system else []), *_history(record.get("history")),
                    {"role": "user", "content": "\n".join(p for p in parts if p)},
                    {"role": "assistant", "content": _text(record[response_field])}]
    raise ValueError(f"it has no prompt and response fields (its fields: {', '.join(map(str, record)) or 'none'})")


def to_pairs(messages: list[dict[str, str]]) -> tuple[str, list[tuple[str, str]]]:
    """``(system, [(prompt, response), ...])`` of alternating user and assistant turns; ValueError otherwise."""
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
    turns = messages[1:] if messages and messages[0]["role"] == "system" else messages
    roles = [t["role"] for t in turns]
    if not turns or roles != ["user", "assistant"] * (len(turns) // 2):
        raise ValueError(f"its turns are not user and assistant in turn, ending with the assistant ({roles})")
    return system, [(turns[i]["content"], turns[i + 1]["content"]) for i in range(0, len(turns), 2)]


def _messages_row(record: Mapping[str, Any]) -> dict[str, Any]:
    return {"messages": to_messages(record)}


def _alpaca_row(record: Mapping[str, Any]) -> dict[str, Any]:
    system, pairs = to_pairs(to_messages(record))
    *history, (instruction, output) = pairs
    query = ""
    if "instruction" in record and not any(isinstance(record.get(k), list) for k in ("messages", "conversations")):
        instruction, query = _text(record["instruction"]), _text(record.get("input"))
    return {"instruction": instruction, "input": query, "output": output, "system": system,
            "history": [list(p) for p in history]}


def _sharegpt_row(record: Mapping[str, Any]) -> dict[str, Any]:
    system, pairs = to_pairs(to_messages(record))
    turns = [{"from": SHAREGPT_SPEAKERS[role], "value": text} for pair in pairs
             for role, text in zip(("user", "assistant"), pair, strict=True)]
    return {"conversations": turns, "system": system}


#: LLaMA-Factory's entry of each chat export it reads
_DATASET_ENTRIES = {
    "alpaca": {"formatting": "alpaca", "columns": {"prompt": "instruction", "query": "input", "response": "output",
                                                   "system": "system", "history": "history"}},
    "sharegpt": {"formatting": "sharegpt", "columns": {"messages": "conversations", "system": "system"},
                 "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}},
}


def _chat_rows(rows: Rows, convert: Callable[[Mapping[str, Any]], dict[str, Any]], name: str) -> Iterator[dict]:
    for row in rows.dicts():
        extras = {k: row.pop(k) for k in ("_id", "_rank", "_weight")}
        try:
            converted = convert(row)
        except ValueError as err:
            raise InputError(f"export {name}: record {extras['_id']} (rank {extras['_rank']}) cannot be a "
                             f"conversation: {err}", fix=_CHAT_FIX) from None
        yield {**converted, **extras}


def _write_lines(path: Path, rows: Iterator[dict[str, Any]]) -> None:
    atomic_write(path, lambda f: f.writelines(_json_line(r) for r in rows))


def _chat_writer(name: str, convert: Callable[[Mapping[str, Any]], dict[str, Any]]) -> Callable:
    def write(rows: Rows, folder: Path) -> list[str]:
        file = f"{name}.jsonl"
        _write_lines(folder / file, _chat_rows(rows, convert, name))
        if name not in _DATASET_ENTRIES:
            return [file]
        info_path = folder / DATASET_INFO
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
        info[f"tasksift_{name}"] = {"file_name": file, **_DATASET_ENTRIES[name]}
        write_json_atomic(info_path, info)
        return [file, DATASET_INFO]

    return write


def _write_jsonl(rows: Rows, folder: Path) -> list[str]:
    _write_lines(folder / "records.jsonl", rows.dicts())
    return ["records.jsonl"]


def _write_parquet(rows: Rows, folder: Path) -> list[str]:
    write_parquet_atomic(folder / "records.parquet", rows.table())
    return ["records.parquet"]


def _write_hf(rows: Rows, folder: Path) -> list[str]:
    hf_dataset(rows).save_to_disk(str(folder / "hf"))
    return ["hf"]


#: the formats that read a conversation out of each record: name -> a record's row in that format
CHAT_FORMATS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "messages": _messages_row, "alpaca": _alpaca_row, "sharegpt": _sharegpt_row}
#: the export formats by name: each writes its files into the export folder and returns their names
WRITERS: dict[str, Callable[[Rows, Path], list[str]]] = {
    "jsonl": _write_jsonl, "parquet": _write_parquet, "hf": _write_hf,
    **{name: _chat_writer(name, convert) for name, convert in CHAT_FORMATS.items()}}


def hf_dataset(rows: Rows) -> Any:
    """The rows as a ``datasets.Dataset``."""
    import datasets

    return datasets.Dataset(rows.table())


def export_names(export: str | Sequence[str] | None) -> list[str]:
    """The requested formats, each once in the order given (``"jsonl,hf"`` or a list); InputError for an
    unknown one."""
    items = [export] if isinstance(export, str) else list(export or [])
    names = list(dict.fromkeys(n.strip().lower() for item in items for n in str(item).split(",") if n.strip()))
    for name in names:
        if name not in WRITERS:
            raise InputError(f"unknown export format {name!r}", fix=f"use one of {', '.join(WRITERS)}")
    return names


def check_exports(names: Sequence[str], records: RecordSet | None, *, repeat_weights: bool = False,
                  out: Any = None) -> None:
    """Refuse, before any selection work, exports that cannot be written: no ``out``, no pool records, or a
    chat format the pool's first record cannot be converted to."""
    if repeat_weights and not names:
        raise InputError("--repeat-weights applies to the --export files, and no export was asked for",
                         fix="add --export jsonl (or another format)")
    if not names:
        return
    if out is None:
        raise InputError("exports are written into the run folder, and none was given", fix="pass --out")
    if records is None:
        raise InputError("exports write the chosen records, and the pool came as vectors only",
                         fix="pass --pool records")
    if len(records) == 0:
        return
    first = records.take([0])[0]
    for name in names:
        if name in CHAT_FORMATS:
            try:
                CHAT_FORMATS[name](first)
            except ValueError as err:
                raise InputError(f"export {name}: the pool's first record cannot be a conversation: {err}",
                                 path=records.path, fix=_CHAT_FIX) from None


def write_exports(selection: Selection, run_dir: Path, records: RecordSet, names: Sequence[str], *,
                  repeat_weights: bool = False) -> dict[str, Any]:
    """Write each format of ``names`` into ``run_dir/export/``; return what the manifest records of them."""
    rows = Rows.of(selection, records, repeat_weights)
    folder = Path(run_dir) / EXPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: [f"{EXPORT_DIR}/{f}" for f in WRITERS[name](rows, folder)] for name in names}
    return {"formats": list(names), "repeat_weights": bool(repeat_weights), "rows": len(rows), "files": files}
