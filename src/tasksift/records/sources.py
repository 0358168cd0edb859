"""Which files an input names, and their format.

An input is a file; a glob (``data/*.jsonl.gz``) or a list of files, read as one source whose rows are numbered
across the files in order (a glob's matches sorted by name); a ``datasets.save_to_disk`` directory (a
``DatasetDict`` one with a split); or a folder laid out like a Hugging Face hub dataset, whose files of one split
are read:

- ``subset`` picks the folder ``<subset>/`` or ``data/<subset>/``;
- a file's split is the word its name starts with, before ``-`` or ``.`` (``data/train-00000-of-00002.parquet``,
  ``test.jsonl``), else the name of the folder holding it (``validation/0000.parquet``), else ``train``;
- ``split`` picks one; without it, ``train`` if there is one, else the only split.

A ``split`` or ``subset`` given with a plain file or a glob is not used.
"""

from __future__ import annotations

import glob
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from tasksift.records.files import COMPRESSIONS, file_sha256, hf_dir_sha256
from tasksift.util.errors import InputError

#: file extensions and the format each one means
EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
#: the formats that may be compressed (read as a stream)
COMPRESSIBLE = ("jsonl",)
_SPLIT_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9_]*?)[-.]")
#: files of a dataset folder that describe it and hold no records
_METADATA = {"dataset_info.json", "dataset_infos.json", "dataset_dict.json", "state.json"}


def input_files(source: str | Path | Sequence[str | Path], split: str | None = None,
                subset: str | None = None) -> list[Path]:
    """The files (or ``save_to_disk`` directories) an input names, in reading order."""
    if not isinstance(source, str | Path):
        files = [Path(p) for p in source]
        if not files:
            raise InputError("the list of input files is empty", fix="give at least one file")
        return files
    path = Path(source)
    if path.is_dir():
        if (path / "state.json").exists():
            return [path]
        if (path / "dataset_dict.json").exists():
            return [_dict_split(path, split)]
        return hub_files(path, split, subset)
    if not path.exists() and glob.has_magic(str(source)):
        matches = sorted(Path(p) for p in glob.glob(str(source), recursive=True) if Path(p).is_file())
        if not matches:
            raise InputError("no file matches the pattern", path=source, fix="check the pattern and the folder")
        return matches
    return [path]


def source_sha256(source: str | Path | Sequence[str | Path], split: str | None = None,
                  subset: str | None = None) -> str:
    """The hash :func:`tasksift.records.load_records` records for a source of files, computed from the files
    alone (to tell whether a run's input changed): one file's own hash, or one over the names and hashes of
    several."""
    files = input_files(source, split, subset)
    hashes = [hf_dir_sha256(f) if f.is_dir() else file_sha256(f) for f in files]
    if len(files) == 1 and isinstance(source, str | Path):
        return hashes[0]
    return sha256_of_parts([(f.name, h) for f, h in zip(files, hashes, strict=True)])


def sha256_of_parts(parts: Sequence[tuple[str, str]]) -> str:
    """The hash of a source of several files, over each file's name and hash in reading order."""
    digest = hashlib.sha256()
    for name, sha in parts:
        digest.update(f"{name}\0{sha}\n".encode())
    return digest.hexdigest()


def detect_format(path: Path) -> str:
    """The format of ``path`` from its extension (``.jsonl.gz`` is jsonl), or ``hf`` for a ``save_to_disk``
    directory."""
    if not path.exists():
        raise InputError("file not found", path=path, fix="check the path")
    if path.is_dir():
        if (path / "dataset_dict.json").exists():
            splits = sorted(p.name for p in path.iterdir() if p.is_dir())
            raise InputError(f"this is a DatasetDict with splits {splits}, not one dataset", path=path,
                             fix=f"pass --split, or point to one split, e.g. "
                                 f"{path / (splits[0] if splits else 'train')}")
        if not (path / "state.json").exists():
            raise InputError("this directory is not a dataset written by datasets.save_to_disk", path=path,
                             fix="give a .jsonl, .json, .parquet or .csv file, or a save_to_disk directory")
        return "hf"
    fmt = _format_of(path)
    if fmt is None:
        raise InputError(f"unknown records format '{''.join(path.suffixes[-2:]) or '(no extension)'}'", path=path,
                         fix="use .jsonl (.jsonl.gz, .jsonl.zst), .json, .parquet, .csv or a datasets.save_to_disk "
                             "directory")
    return fmt


def hub_files(folder: Path, split: str | None, subset: str | None) -> list[Path]:
    """The data files of one split (and subset) of a folder laid out like a hub dataset."""
    root = folder
    if subset is not None:
        options = [folder / subset, folder / "data" / subset]
        root = next((p for p in options if p.is_dir()), None)
        if root is None:
            found = sorted(p.name for base in (folder, folder / "data") if base.is_dir()
                           for p in base.iterdir() if p.is_dir() and p.name != "data" and not p.name.startswith("."))
            raise InputError(f"no subset {subset!r} (folders found: {', '.join(found) or 'none'})", path=folder,
                             fix="pass --subset with one of those folders")
    by_split: dict[str, list[Path]] = {}
    for file in sorted(root.rglob("*")):
        rel = file.relative_to(root)
        hidden = any(part.startswith(".") for part in rel.parts) or file.name in _METADATA
        if file.is_file() and _format_of(file) and not hidden:
            by_split.setdefault(_split_of(rel), []).append(file)
    if not by_split:
        raise InputError("this directory holds no data files (.parquet, .jsonl, .json, .csv) and is not a dataset "
                         "written by datasets.save_to_disk", path=root,
                         fix="give a folder laid out like a hub dataset (data/train-*.parquet), a file or a glob")
    return by_split[choose_split(folder, split, sorted(by_split))]


def choose_split(folder: str | Path, split: str | None, splits: list[str]) -> str:
    if split is not None:
        if split not in splits:
            raise InputError(f"no split {split!r} (splits found: {', '.join(splits)})", path=folder,
                             fix="pass --split with one of those")
        return split
    if "train" in splits or len(splits) == 1:
        return "train" if "train" in splits else splits[0]
    raise InputError(f"the folder holds several splits ({', '.join(splits)}) and none is 'train'", path=folder,
                     fix="pick one with --split")


def _dict_split(path: Path, split: str | None) -> Path:
    """The split directory of a ``DatasetDict`` written by ``save_to_disk`` (without a split, the directory
    itself, which :func:`detect_format` refuses naming the splits)."""
    if split is None:
        return path
    splits = sorted(p.name for p in path.iterdir() if p.is_dir())
    return path / choose_split(path, split, splits)


def _split_of(rel: Path) -> str:
    match = _SPLIT_PREFIX.match(rel.name)
    if match is not None:
        return match.group(1)
    folders = [part for part in rel.parts[:-1] if part != "data"]
    return folders[-1] if folders else "train"


def _format_of(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in COMPRESSIONS:
        fmt = EXTENSIONS.get(Path(path.stem).suffix.lower())
        return fmt if fmt in COMPRESSIBLE else None
    return EXTENSIONS.get(suffix)
