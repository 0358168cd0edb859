"""Atomic file writes: a reader sees the old file or the complete new one, never a half-written file.

A file is written under a temporary sibling name (``.<name>.<host>.<pid>.tmp``), flushed to disk with fsync,
moved onto its final name with ``os.replace`` (atomic on one file system), and the directory is fsynced so
that the rename itself survives a crash. The host and process in the temporary name let
:func:`stale_temp_files` find the ones a dead process left behind (on a shared file system, only this host's).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa

#: this host's name as it appears in temporary file names (letters, digits and ``-`` only)
HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
#: the suffix of every temporary file
TMP_SUFFIX = ".tmp"


def temp_path(final: Path) -> Path:
    """The temporary sibling of ``final`` that this process writes before renaming it onto ``final``."""
    final = Path(final)
    return final.with_name(f".{final.name}.{HOST}.{os.getpid()}{TMP_SUFFIX}")


def stale_temp_files(folder: Path) -> Iterator[Path]:
    """The temporary files in ``folder`` left by processes of this host that are no longer running."""
    for tmp in Path(folder).glob(f"*{TMP_SUFFIX}"):
        parts = tmp.name[: -len(TMP_SUFFIX)].rsplit(".", 2)
        if len(parts) != 3 or parts[1] != HOST or not parts[2].isdigit():
            continue
        pid = int(parts[2])
        if pid != os.getpid() and not pid_alive(pid):
            yield tmp


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, owned by another user
        return True
    return True


def fsync_file(path: Path) -> None:
    """Flush a written file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (POSIX); a no-op where directories cannot be opened or synced."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def move_into_place(src: Path, final: Path) -> None:
    """Rename ``src`` (a finished file or folder) onto ``final`` and make the rename durable."""
    os.replace(src, final)
    fsync_dir(Path(final).parent)


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final`` for the caller to write (and close); on success it is fsynced
    and moved onto ``final``, on an exception it is removed and ``final`` is left as it was."""
    final = Path(final)
    tmp = temp_path(final)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(final.parent)


def atomic_write(final: Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Write ``final`` atomically: ``write`` gets the temporary file, open in binary mode."""
    final = Path(final)
    with atomic_path(final) as tmp, open(tmp, "wb") as f:
        write(f)
    return final


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def to_jsonable(obj: Any) -> Any:
    """``json.dumps`` fallback: numpy scalars and arrays, paths, sets, dates and Arrow scalars."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=str)
    if isinstance(obj, dt.date | dt.datetime | dt.time):
        return obj.isoformat()
    if isinstance(obj, pa.Scalar):
        return obj.as_py()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable: {obj!r}")


def json_text(obj: Any) -> str:
    """``obj`` as indented JSON with a final newline (numpy values and paths converted)."""
    return json.dumps(obj, indent=2, ensure_ascii=False, default=to_jsonable) + "\n"


def write_json_atomic(path: Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically. Serialises before touching the disk."""
    return write_text_atomic(path, json_text(obj))


def write_jsonl_atomic(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write one JSON object a line (UTF-8, keys in insertion order) atomically; return the line count."""
    n = 0

    def write(f: BinaryIO) -> None:
        nonlocal n
        for row in rows:
            f.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
            n += 1

    atomic_write(path, write)
    return n


def write_npy_atomic(path: Path, matrix: np.ndarray) -> Path:
    """Save ``matrix`` as ``.npy`` atomically."""
    return atomic_write(path, lambda f: np.save(f, matrix))
