"""``.jsonl`` / ``.ndjson``: one JSON object a line. Records are fetched again from their line's byte offset.

A compressed file (``.jsonl.gz``, ``.jsonl.zst``) is decompressed as a stream; its offsets count decompressed
bytes, and fetching rows streams it again up to the last row wanted. Its hash is that of the compressed bytes.

A line longer than :data:`DEFAULT_MAX_LINE_BYTES` (64 MiB, newline included; ``$TASKSIFT_MAX_LINE_BYTES``
changes it) is refused as soon as that many bytes have been read, so a file without newlines cannot exhaust
memory.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from tasksift.records.files import BOM, compression, file_sha256, open_binary, open_stream
from tasksift.records.readers import Loaded
from tasksift.records.view import ViewBuilder, Where
from tasksift.util.env import env_bytes
from tasksift.util.errors import InputError
from tasksift.util.spill import SpilledArray

#: environment variable setting the longest line read, in bytes
MAX_LINE_ENV = "TASKSIFT_MAX_LINE_BYTES"
#: the longest line read when the environment does not say, in bytes (newline included)
DEFAULT_MAX_LINE_BYTES = 64 << 20


def max_line_bytes() -> int:
    """The longest line :func:`read` accepts: ``$TASKSIFT_MAX_LINE_BYTES``, else 64 MiB."""
    return env_bytes(MAX_LINE_ENV, DEFAULT_MAX_LINE_BYTES, minimum=1, example=134217728)


def read(path: Path, builder: ViewBuilder, batch_size: int) -> Loaded:
    """One JSON object per line; blank lines skipped. Keeps each record line's byte offset; hashes the bytes."""
    offsets = SpilledArray(np.int64)  # past a small buffer, in a temporary file: nothing a line in memory
    packed = compression(path) is not None
    digest = hashlib.sha256()
    pos = 0
    limit = max_line_bytes()
    with open_stream(path) as f:
        for lineno, raw in enumerate(_lines(f, path, limit), start=1):
            if not packed:
                digest.update(raw)
            start, pos = pos, pos + len(raw)
            body = raw
            if lineno == 1 and raw.startswith(BOM):
                body, start = raw[len(BOM):], start + len(BOM)
            if not body.strip():
                continue
            builder.add(_parse_line(body, path, lineno), Where(line=lineno), check_surrogates=b"\\u" in body)
            offsets.append(start)
    sha = file_sha256(path) if packed else digest.hexdigest()
    starts = offsets.values()
    return Loaded(builder, sha, starts, LineRows(path, starts))


def take(path: Path, offsets: np.ndarray, idx: np.ndarray) -> list[dict[str, Any]]:
    """The records at ``idx``, each line re-read at its offset and parsed again (exactly as written)."""
    unique, inverse = np.unique(idx, return_inverse=True)
    lines: list[bytes] = []
    if compression(path) is not None:
        wanted, pos = iter(offsets[unique].tolist()), 0
        target = next(wanted, None)
        with open_stream(path) as f:
            for raw in _lines(f, path, max_line_bytes()):
                if target is None:
                    break
                if pos <= target < pos + len(raw):  # the first line may start after a byte order mark
                    lines.append(raw[target - pos:])
                    target = next(wanted, None)
                pos += len(raw)
    else:
        with open(path, "rb") as f:
            for i in unique:  # increasing offsets: one forward pass over the file
                f.seek(int(offsets[i]))
                lines.append(f.readline())
    return [json.loads(lines[j]) for j in inverse]


class LineRows:
    """``rows(start, stop)``: the records of rows ``start`` to ``stop - 1`` parsed again from their lines.

    A plain file is read as one block from the first row's offset to the end of the last row's line. A compressed
    file is read through one decompressing stream kept open: a range at or after the last one read goes on from
    where the stream is (so reading a column range by range in row order decompresses the file once), an
    earlier one starts the stream again."""

    def __init__(self, path: Path, offsets: np.ndarray) -> None:
        self.path = path
        self.offsets = offsets
        self._lock = threading.Lock()
        self._stream: Any = None
        self._pos = 0

    def __call__(self, start: int, stop: int) -> list[dict[str, Any]]:
        if stop <= start:
            return []
        if compression(self.path) is None:
            lines = self._plain(start, stop)
        else:
            with self._lock:
                lines = self._packed(start, stop)
        return [_reparse(line, self.path, int(self.offsets[start + k])) for k, line in enumerate(lines)]

    def _plain(self, start: int, stop: int) -> list[bytes]:
        first, last = int(self.offsets[start]), int(self.offsets[stop - 1])
        with open_binary(self.path) as f:
            f.seek(first)
            block = f.read(last - first) + f.readline(max_line_bytes() + 1)
        lines = []
        for at in (self.offsets[start:stop] - first).tolist():
            end = block.find(b"\n", at)
            lines.append(block[at:] if end < 0 else block[at:end + 1])
        return lines

    def _packed(self, start: int, stop: int) -> list[bytes]:
        try:
            if self._stream is None or self._pos > int(self.offsets[start]):
                self.close()
                self._stream, self._pos = open_stream(self.path), 0
            lines = []
            for target in self.offsets[start:stop].tolist():
                while self._pos < target:
                    skipped = len(self._stream.read(min(1 << 20, target - self._pos)))
                    if not skipped:
                        break
                    self._pos += skipped
                line = self._stream.readline(max_line_bytes() + 1)
                self._pos += len(line)
                lines.append(line)
            return lines
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001 - gzip raises OSError or EOFError, zstandard its own ZstdError
            self.close()
            raise InputError(f"cannot read the file again: {e}", path=self.path,
                             fix="check that the file is still there and complete") from e

    def close(self) -> None:
        """Close the decompressing stream (a later read opens it again)."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def __del__(self) -> None:
        self.close()


def _reparse(raw: bytes, path: Path, offset: int) -> dict[str, Any]:
    """The record of a line read again (it parsed when the file was loaded)."""
    try:
        rec = json.loads(raw.decode("utf-8"))
    except ValueError:  # also UnicodeDecodeError
        rec = None
    if not isinstance(rec, dict):
        raise InputError(f"the line at byte {offset} no longer holds a JSON object: the file changed after it "
                         "was loaded", path=path, fix="load the records again")
    return rec


def _lines(f: Any, path: Path, limit: int) -> Any:
    """The file's lines, refusing one longer than ``limit`` bytes and a file that cannot be decompressed."""
    lineno = 0
    try:
        for lineno, raw in enumerate(iter(lambda: f.readline(limit + 1), b""), start=1):
            if len(raw) > limit:
                raise InputError(f"the line is longer than {limit:,} bytes", path=path, line=lineno,
                                 fix=f"split the record, or raise the limit with {MAX_LINE_ENV}=BYTES")
            yield raw
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - gzip raises OSError or EOFError, zstandard its own ZstdError
        raise InputError(f"cannot read the file after line {lineno}: {e}", path=path,
                         fix="check that the file is complete and compressed as its extension says") from e


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type (for error messages)."""
    names = {list: "list", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _parse_line(body: bytes, path: Path, lineno: int) -> dict[str, Any]:
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
        raise InputError(f"the line is a JSON {json_type(rec)}, not an object", path=path, line=lineno,
                         fix='each line must be one object like {"text": ...}')
    return rec
