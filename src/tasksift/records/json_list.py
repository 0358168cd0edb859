"""``.json``: one list of objects, read whole (a JSON list cannot be streamed) and parsed again to fetch rows."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from tasksift.records.files import BOM, open_binary
from tasksift.records.jsonl import json_type
from tasksift.records.readers import Loaded
from tasksift.records.view import ViewBuilder, Where
from tasksift.util.errors import InputError


def read(path: Path, builder: ViewBuilder, batch_size: int) -> Loaded:
    rows, sha = _parse(path)
    for i, rec in enumerate(rows):
        builder.add(rec, Where(index=i), check_surrogates=True)
    return Loaded(builder, sha)


def take(path: Path, state: None, idx: np.ndarray) -> list[dict[str, Any]]:
    rows = _parse(path)[0]
    return [copy.deepcopy(rows[i]) for i in idx]


def _parse(path: Path) -> tuple[list[dict[str, Any]], str]:
    """The records of a ``.json`` file holding a list of objects, and the sha256 of its bytes."""
    with open_binary(path) as f:
        data = f.read()
    sha = hashlib.sha256(data).hexdigest()
    if data.startswith(BOM):
        data = data[len(BOM):]
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
        raise InputError(f"the file holds a JSON {json_type(rows) if not isinstance(rows, dict) else 'object'}, "
                         "not a list of records", path=path,
                         fix="write a list [{...}, {...}] or use .jsonl with one object per line")
    for i, rec in enumerate(rows):
        if not isinstance(rec, dict):
            raise InputError(f"record {i} is a JSON {json_type(rec)}, not an object", path=path,
                             fix='each record must be an object like {"text": ...}')
    return rows, sha
