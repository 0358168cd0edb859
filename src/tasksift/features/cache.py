"""A content-keyed, resumable cache of per-row feature matrices (embeddings, per-example gradients, ...).

Layout::

    <root>/<kind>/<sha256 of the canonical JSON of the settings>/
        settings.json              the settings that produced every shard in this directory
        <shard key>.npy            float32 (or float16, ``dtype="float16"``), rows x dim
        <shard key>.done           completion marker: {"rows": ..., "dim": ..., "seconds": ..., "checksum": ...}

The rows of a ``compute`` call are cut into shards of ``shard_size`` consecutive rows, starting at row 0, and
the texts are read one shard at a time (``texts[start:stop]``), so a streamed text column
(:class:`tasksift.records.column.TextColumn`) is never held whole. A
shard's key is the sha256 of the sha256 digests of its texts, so the same texts give the same shard in any
dataset and a pool that gains rows at its end reuses all of its earlier full shards. A shard is written to a
temporary name, flushed, fsynced and renamed; its marker is then written the same way. Only a shard whose
marker exists (and whose file's header and size match it) counts as finished, so a run killed at any point
loses at most the shard it was computing, and a rerun never recomputes a finished shard.

Every read checks a shard's bytes against the checksum in its marker (:mod:`tasksift.features.shards`; hashed
as the bytes are read, under 10% of a warm read, see ``benchmarks/cache_verify.py``). A shard that
fails (flipped or overwritten bytes, NaN, a shard swapped with another) is never served: the result of
:meth:`FeatureCache.compute` recomputes it with its feature function, stores it again and logs a warning on the
``tasksift`` logger.

Reads are memory-mapped or streamed: :meth:`CachedFeatures.iter_shards` streams a pool that does not fit in
memory.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from tasksift.features.shards import (
    DTYPES,
    CachedFeatures,
    Marker,
    checksum,
    layout_ok,
    load_checked,
    marker_text,
    read_marker,
)
from tasksift.records.column import TextColumn
from tasksift.util.env import CACHE_ENV, default_cache_root
from tasksift.util.errors import InputError, from_os_error
from tasksift.util.hashing import canonical_json, settings_key, text_digest
from tasksift.util.io import atomic_write, stale_temp_files, write_text_atomic
from tasksift.util.progress import ProgressTask

__all__ = [
    "CACHE_ENV",
    "DEFAULT_SHARD_SIZE",
    "CachedFeatures",
    "FeatureCache",
    "FeatureFn",
    "canonical_json",
    "default_cache_root",
    "settings_key",
    "shard_key",
    "text_digest",
]

#: rows per shard when the settings do not say
DEFAULT_SHARD_SIZE = 4096

_KIND_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

#: ``fn(texts) -> (len(texts), dim) array``, or with ``reports_progress``: ``fn(texts, advance)``
FeatureFn = Callable[..., np.ndarray]


def shard_key(texts: Sequence[str], *, offset: int = 0) -> str:
    """The key of a shard: sha256 (hex) of the concatenated sha256 digests of its texts, in order.

    ``offset`` (the row number of the first text) only serves error messages.
    """
    h = hashlib.sha256()
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text {offset + i} is {type(text).__name__}, not str")
        h.update(text_digest(text))
    return h.hexdigest()


@dataclass(frozen=True)
class _Shard:
    index: int
    start: int
    stop: int
    key: str

    @property
    def rows(self) -> int:
        return self.stop - self.start


class FeatureCache:
    """Shard files of float32 feature rows, keyed by the feature settings and by the content of the texts.

    ``settings`` must be JSON-serialisable and describe everything that changes the features (model identity,
    dimensions, normalisation, maximum sequence length, ...); ``shard_size`` (rows per shard) is one of them,
    :data:`DEFAULT_SHARD_SIZE` when absent. ``meta`` is recorded in :meth:`CachedFeatures.info` but is not part
    of the key (for example a model's path, which may differ between machines that share a cache). ``dtype``:
    how rows are stored, ``"float32"`` (default) or ``"float16"`` (half the disk and memory; rows are rounded to
    float16 when stored, and a value beyond float16's range is refused as infinite); the settings must say it
    too (it changes the features), so that the two never share a key.
    """

    def __init__(
        self,
        root: str | Path | None,
        kind: str,
        settings: Mapping[str, Any],
        *,
        meta: Mapping[str, Any] | None = None,
        dtype: str = "float32",
    ) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"cache dtype {dtype!r} must be one of {', '.join(DTYPES)}")
        self.dtype = dtype
        if not _KIND_RE.match(kind):
            raise ValueError(f"cache kind {kind!r} must be letters, digits, '_', '.' or '-'")
        shard_size = settings.get("shard_size", DEFAULT_SHARD_SIZE)
        if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
            raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
        self.settings: dict[str, Any] = {**settings, "shard_size": shard_size}
        try:
            self.key = settings_key(self.settings)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"cache settings must be JSON-serialisable and finite: {exc}") from exc
        self.root = Path(root).expanduser() if root is not None else default_cache_root()
        self.kind = kind
        self.meta: dict[str, Any] = dict(meta or {})
        self.dir = self.root / kind / self.key
        self._planned: tuple[Sequence[str], list[_Shard]] | None = None

    @property
    def shard_size(self) -> int:
        """Rows per shard."""
        return int(self.settings["shard_size"])

    def shard_path(self, key: str) -> Path:
        """Where the rows of shard ``key`` are stored."""
        return self.dir / f"{key}.npy"

    def marker_path(self, key: str) -> Path:
        """Where the completion marker of shard ``key`` is stored."""
        return self.dir / f"{key}.done"

    def plan(self, texts: Sequence[str]) -> list[tuple[int, int, str]]:
        """``(start, stop, key)`` of each shard of ``texts``, in row order."""
        return [(s.start, s.stop, s.key) for s in self._plan(texts)]

    def finished_dim(self, key: str, rows: int, *, verify: bool = False) -> int | None:
        """The width of shard ``key`` if it is finished (its marker parses and its file's header and size agree
        with it), else ``None``. With ``verify`` its bytes are checked too (a read of the whole shard)."""
        marker = self._finished(key, rows)
        if marker is None:
            return None
        if verify and load_checked(self.shard_path(key), rows, marker.dim, marker.checksum,
                                   self.dtype)[1] is not None:
            return None
        return marker.dim

    def compute(
        self,
        texts: Sequence[str],
        fn: FeatureFn,
        *,
        progress: bool | Progress = True,
        desc: str | None = None,
        dim: int | None = None,
        reports_progress: bool = False,
    ) -> CachedFeatures:
        """Features of ``texts``: finished shards are reused, the others computed with ``fn`` and stored.

        ``fn(chunk)`` gets the texts of one shard (a list) and returns a ``(len(chunk), dim)`` array. With
        ``reports_progress=True`` it is called as ``fn(chunk, advance)`` and may call ``advance(n_rows)`` as it
        goes, so the progress bar moves within a shard. ``dim``, when given, is checked against ``fn``'s output
        and gives the width of an empty result. ``progress`` is a flag or a :class:`rich.progress.Progress` that
        the caller owns (to show several bars in one display). An exception from ``fn`` propagates; the shards
        finished before it stay finished.
        """
        t0 = time.perf_counter()
        shards = self._plan(texts)
        self.prepare()
        done, todo_rows, dim = self._finished_now(shards, dim)

        def run(shard: _Shard, advance: Callable[[int], None]) -> tuple[np.ndarray, float]:
            chunk = list(texts[shard.start:shard.stop])
            t_shard = time.perf_counter()
            out = fn(chunk, advance) if reports_progress else fn(chunk)
            return self._validate(out, shard, dim), time.perf_counter() - t_shard

        def repair(i: int) -> tuple[np.ndarray, str]:
            arr, seconds = run(shards[i], lambda n: None)
            return arr, self._store(shards[i].key, arr, seconds)

        n_computed = rows_computed = 0
        compute_seconds = 0.0
        with ProgressTask(progress, desc or self.kind, todo_rows, len(texts) - todo_rows) as bar:
            for shard in shards:
                if shard.key not in done:
                    found = self._finished(shard.key, shard.rows)  # another process may have finished it
                    if found is not None:
                        done[shard.key] = found
                        dim = self._check_dim(dim, found.dim, "a cached shard")
                        bar.finish_step(shard.rows)
                if shard.key in done:
                    continue
                arr, seconds = run(shard, bar.advance)
                dim = arr.shape[1]
                done[shard.key] = Marker(dim, self._store(shard.key, arr, seconds))
                n_computed += 1
                rows_computed += shard.rows
                compute_seconds += seconds
                bar.finish_step(shard.rows)
        result = self._result(shards, done, dim, n_computed=n_computed, rows_computed=rows_computed,
                              compute_seconds=compute_seconds, seconds=time.perf_counter() - t0)
        result.repair = repair
        return result

    # -- for executors that compute shards elsewhere (tasksift.engine) -----------------------------------------

    def prepare(self) -> None:
        """Create the cache directory, record its settings, sweep temporary files of dead local processes.

        A cache root that cannot be a writable directory (a file, a read-only place) raises InputError naming it."""
        try:
            self._prepare_dir()
        except OSError as err:
            cause = from_os_error(err)
            raise InputError(f"cannot use it as the feature cache: {cause.what}", path=self.root,
                             fix=f"{cause.fix}; the cache is --cache-dir or ${CACHE_ENV}") from err
        for tmp in stale_temp_files(self.dir):
            tmp.unlink(missing_ok=True)

    def unfinished(self, texts: Sequence[str]) -> list[tuple[int, int, str]]:
        """``(start, stop, key)`` of each shard of ``texts`` that is not finished, each key once, in row order.

        Finished shards are read and checked here (an engine that computes shards elsewhere recomputes those
        that fail), so this costs a read of the cached shards."""
        seen: set[str] = set()
        out = []
        for shard in self._plan(texts):
            if shard.key in seen:
                continue
            seen.add(shard.key)
            if self.finished_dim(shard.key, shard.rows, verify=True) is None:
                out.append((shard.start, shard.stop, shard.key))
        return out

    def store(self, key: str, out: Any, *, start: int, stop: int, seconds: float, dim: int | None = None) -> int:
        """Check and store the features of shard ``key`` (rows ``start`` to ``stop - 1``) with its completion
        marker, exactly as :meth:`compute` does; returns the width."""
        shard = _Shard(start // self.shard_size, start, stop, key)
        arr = self._validate(out, shard, dim)
        self._store(key, arr, seconds)
        return int(arr.shape[1])

    def collect(self, texts: Sequence[str], *, n_computed: int, rows_computed: int, compute_seconds: float,
                seconds: float, dim: int | None = None) -> CachedFeatures:
        """The :class:`CachedFeatures` of ``texts`` once every shard is finished (raises ``ValueError`` if one
        is not). The counts say how many shards and rows the caller computed; the other shards were reused."""
        shards = self._plan(texts)
        done: dict[str, Marker] = {}
        for shard in shards:
            found = self._finished(shard.key, shard.rows)
            if found is None:
                raise ValueError(f"shard {shard.index} (rows {shard.start}-{shard.stop - 1}) is not finished")
            done[shard.key] = found
            dim = self._check_dim(dim, found.dim, "a cached shard")
        return self._result(shards, done, dim, n_computed=n_computed, rows_computed=rows_computed,
                            compute_seconds=compute_seconds, seconds=seconds)

    # -- internals -------------------------------------------------------------------------------------------

    def _finished(self, key: str, rows: int) -> Marker | None:
        """The marker of shard ``key`` if the shard is finished (see :meth:`finished_dim`), else ``None``."""
        marker = read_marker(self.marker_path(key), rows)
        if marker is None or not layout_ok(self.shard_path(key), rows, marker.dim, self.dtype):
            return None
        return marker

    def _finished_now(self, shards: list[_Shard], dim: int | None) -> tuple[dict[str, Marker], int, int | None]:
        """The marker of each shard finished now (by key), the rows still to compute, and the width so far.

        This decides the progress total; :meth:`compute` checks each shard again before computing it."""
        done: dict[str, Marker] = {}
        pending: set[str] = set()
        todo_rows = 0
        for shard in shards:
            if shard.key in done or shard.key in pending:
                continue
            found = self._finished(shard.key, shard.rows)
            if found is None:
                pending.add(shard.key)
                todo_rows += shard.rows
            else:
                done[shard.key] = found
        for found in done.values():
            dim = self._check_dim(dim, found.dim, "a cached shard")
        return done, todo_rows, dim

    def _result(self, shards: list[_Shard], done: dict[str, Marker], dim: int | None, *, n_computed: int,
                rows_computed: int, compute_seconds: float, seconds: float) -> CachedFeatures:
        """The :class:`CachedFeatures` of finished ``shards``; those the caller did not compute were reused."""
        return CachedFeatures(
            cache_dir=self.dir, kind=self.kind, settings=self.settings, meta=self.meta,
            shard_keys=[s.key for s in shards], shard_paths=[self.shard_path(s.key) for s in shards],
            shard_rows=[s.rows for s in shards], dim=int(dim) if dim is not None else 0, n_computed=n_computed,
            n_reused=len(shards) - n_computed, seconds=seconds, rows_computed=rows_computed,
            compute_seconds=compute_seconds, checksums=[done[s.key].checksum for s in shards], dtype=self.dtype,
        )

    def _plan(self, texts: Sequence[str]) -> list[_Shard]:
        """The shards of ``texts``, read one shard at a time (``texts[start:stop]``). The plan of a streamed
        column (which cannot change) is kept, so that planning, computing elsewhere and collecting read it once."""
        if self._planned is not None and self._planned[0] is texts:
            return self._planned[1]
        size = self.shard_size
        shards = []
        for index in range(math.ceil(len(texts) / size)):
            start, stop = index * size, min((index + 1) * size, len(texts))
            shards.append(_Shard(index, start, stop, shard_key(texts[start:stop], offset=start)))
        self._planned = (texts, shards) if isinstance(texts, TextColumn) else None
        return shards

    def _prepare_dir(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / "settings.json"
        text = json.dumps(self.settings, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
        if path.exists():
            try:
                same = json.loads(path.read_text(encoding="utf-8")) == json.loads(text)
            except (OSError, ValueError):
                same = False
            if same:
                return
        write_text_atomic(path, text)

    @staticmethod
    def _check_dim(expected: int | None, found: int, what: str) -> int:
        if expected is not None and found != expected:
            raise ValueError(f"{what} has {found} columns, expected {expected}")
        return found

    def _validate(self, out: Any, shard: _Shard, dim: int | None) -> np.ndarray:
        with np.errstate(over="ignore"):  # a value beyond float16's range becomes inf, refused below
            arr = np.ascontiguousarray(np.asarray(out, dtype=np.float32).astype(DTYPES[self.dtype], copy=False))
        where = f"shard {shard.index} (rows {shard.start}-{shard.stop - 1})"
        if arr.ndim != 2 or arr.shape[0] != shard.rows:
            raise ValueError(f"the feature function returned shape {arr.shape} for {where}, "
                             f"expected ({shard.rows}, dim)")
        self._check_dim(dim, arr.shape[1], f"the feature function's output for {where}")
        if not np.isfinite(arr).all():
            raise ValueError(f"the feature function returned NaN or infinite values for {where}")
        return arr

    def _store(self, key: str, arr: np.ndarray, seconds: float) -> str:
        """Write shard ``key`` and then its marker (with the rows' checksum, which it returns)."""
        marker = self.marker_path(key)
        marker.unlink(missing_ok=True)  # a stale marker must never vouch for the file being replaced
        atomic_write(self.shard_path(key), lambda f: np.lib.format.write_array(f, arr, allow_pickle=False))
        digest = checksum(arr)
        write_text_atomic(marker, marker_text(int(arr.shape[0]), int(arr.shape[1]), seconds, digest))
        return digest

