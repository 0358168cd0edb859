"""What ``manifest.json`` records of a run: method, parameters, inputs and their hashes, features, engine,
counts, package versions, timings per stage, and the call that reproduces it."""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from tasksift.records import file_sha256, source_sha256
from tasksift.util.errors import InputError

_PACKAGES = ("tasksift", "numpy", "faiss-cpu", "pyarrow", "torch", "sentence-transformers", "transformers")


class Stages:
    """Wall-clock seconds per stage, for the manifest."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0, 4)


def versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Python's and the installed packages' versions (the usual ones and ``extra``)."""
    out = {"python": platform.python_version()}
    for pkg in (*_PACKAGES, *extra):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def records_info(records: Any, vectors: Any) -> dict[str, Any]:
    """Where the records and vectors of one side (pool or target) came from, with their hashes."""
    info: dict[str, Any] = {}
    if records is not None:
        info.update(path=str(records.path) if records.path else None, format=records.format, rows=len(records),
                    sha256=records.file_sha256, id_rule=records.id_rule, text_rule=records.text_rule)
    if isinstance(vectors, str | Path):
        info["vectors"] = {"path": str(vectors), "sha256": file_sha256(Path(vectors))}
    elif vectors is not None:
        info["vectors"] = {"in_memory": True, "shape": list(np.shape(vectors))}
    return info


def where(source: Any) -> Any:
    """A source as the manifest's call records it: a resolved path (a hub id and a glob as given), a list of
    them, or a mark for in-memory data."""
    if source is None:
        return None
    if isinstance(source, str) and (source.startswith("hf://") or any(c in source for c in "*?[")):
        return source
    if isinstance(source, str | Path):
        return str(Path(source).resolve())
    if isinstance(source, list | tuple) and source and all(isinstance(s, str | Path) for s in source):
        return [where(s) for s in source]
    return "<in memory>"


def changed_inputs(manifest: dict[str, Any]) -> list[str]:
    """The input files of a run (records and vectors, at the paths its ``call`` resolved) whose bytes differ
    from the hashes its manifest recorded, each as ``"<path> (pool records)"``; a file that is gone counts."""
    changed = []
    call = _mapping(manifest.get("call"))
    inputs = _mapping(manifest.get("inputs"))
    for side in ("pool", "target"):
        info = _mapping(inputs.get(side))
        split, subset = call.get("split"), call.get("subset")
        if side == "target":  # the target's split and subset default to the pool's
            split, subset = call.get("target_split", split), call.get("target_subset", subset)
        recorded = [(call.get(side), info.get("sha256"), f"{side} records", True),
                    (call.get(f"{side}_vectors"), _mapping(info.get("vectors")).get("sha256"), f"{side} vectors",
                     False)]
        for path, sha, what, records in recorded:
            if not sha or not _is_source(path) or (isinstance(path, str) and path.startswith("hf://")):
                continue
            try:
                now = source_sha256(path, split, subset) if records else file_sha256(Path(path))
            except InputError:
                now = None
            if now != sha:
                changed.append(f"{path} ({what})")
    return changed


def _is_source(path: Any) -> bool:
    """A recorded input that names files (a path, a glob or a list of them), not in-memory data."""
    if isinstance(path, list):
        return bool(path) and all(isinstance(p, str) for p in path)
    return isinstance(path, str) and bool(path) and path != "<in memory>"


def _mapping(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (a damaged manifest is checked field by field)."""
    return value if isinstance(value, dict) else {}
