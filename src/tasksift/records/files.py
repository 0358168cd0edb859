"""Opening and hashing record files, with a one-line error naming the file when it cannot be read."""

from __future__ import annotations

import gzip
import hashlib
import io
from pathlib import Path
from typing import BinaryIO

from tasksift.util import hashing
from tasksift.util.errors import InputError

#: the UTF-8 byte order mark some tools write at the start of a text file
BOM = b"\xef\xbb\xbf"
#: compressed-file extensions and the compression each one means (read as a stream, never whole)
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}


def unreadable(path: Path, error: OSError) -> InputError:
    return InputError(f"cannot read the file: {error.strerror or error}", path=path,
                      fix="check the path and its permissions")


def open_binary(path: Path) -> BinaryIO:
    """``open(path, "rb")``, raising :class:`InputError` when the file cannot be opened."""
    try:
        return open(path, "rb")
    except OSError as e:
        raise unreadable(path, e) from e


def compression(path: Path) -> str | None:
    """``gzip`` or ``zstd`` for a compressed file (by its extension), else None."""
    return COMPRESSIONS.get(path.suffix.lower())


def open_stream(path: Path) -> BinaryIO:
    """The file's bytes, decompressed as they are read when it is compressed (``.gz``, ``.zst``)."""
    f = open_binary(path)
    kind = compression(path)
    if kind == "gzip":
        f.close()
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if kind == "zstd":
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(f, closefd=True))  # type: ignore
    return f


def file_sha256(path: Path) -> str:
    """sha256 of the file's bytes, read in 1 MiB chunks."""
    try:
        return hashing.file_sha256(path)
    except OSError as e:
        raise unreadable(path, e) from e


def hf_dir_sha256(path: Path) -> str:
    """sha256 over the names and bytes of a dataset directory's ``.arrow`` files, in name order."""
    digest = hashlib.sha256()
    for arrow in sorted(path.glob("*.arrow")):
        digest.update(arrow.name.encode() + b"\0")
        try:
            hashing.update_with_file(digest, arrow)
        except OSError as e:
            raise unreadable(arrow, e) from e
    return digest.hexdigest()
