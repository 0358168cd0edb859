"""Content hashes: canonical JSON of settings, texts, files. Cache keys are built from these alone."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: bytes of a file hashed at a time
FILE_CHUNK = 1 << 20


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal settings always give the same string (and hash)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def settings_key(settings: Mapping[str, Any]) -> str:
    """The sha256 (hex) of the canonical JSON of ``settings``: the name of a cache directory."""
    return hashlib.sha256(canonical_json(settings).encode("utf-8")).hexdigest()


def text_digest(text: str) -> bytes:
    """sha256 digest of one text (UTF-8; lone surrogates kept as they are)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def update_with_file(digest: Any, path: Path, chunk: int = FILE_CHUNK) -> None:
    """Feed a file's bytes, read in chunks, to ``digest`` (a ``hashlib`` object)."""
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)


def file_sha256(path: Path, chunk: int = FILE_CHUNK) -> str:
    """sha256 (hex) of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    update_with_file(digest, path, chunk)
    return digest.hexdigest()
