"""A content-keyed, resumable cache of per-row feature matrices (embeddings, per-example gradients, ...).

Layout::

    <root>/<kind>/<sha256 of the canonical JSON of the settings>/
        settings.json              the settings that produced every shard in this directory
        <shard key>.npy            float32, rows x dim
        <shard key>.done           completion marker: {"rows": ..., "dim": ..., "seconds": ...}

The rows of a ``compute`` call are cut into shards of ``shard_size`` consecutive rows, starting at row 0. A
shard's key is the sha256 of the sha256 digests of its texts, so the same texts give the same shard in any
dataset and a pool that gains rows at its end reuses all of its earlier full shards. A shard is written to a
temporary name, flushed, fsynced and renamed; its marker is then written the same way. Only a shard whose
marker exists (and whose file matches it) counts as finished, so a run killed at any point loses at most the
shard it was computing, and a rerun never recomputes a finished shard.

Reads are memory-mapped: :meth:`CachedFeatures.iter_shards` streams a pool that does not fit in memory.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

#: environment variable that overrides the default cache root
CACHE_ENV = "TASKSIFT_CACHE"
#: rows per shard when the settings do not say
DEFAULT_SHARD_SIZE = 4096

_KIND_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TMP_SUFFIX = ".tmp"
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"

#: ``fn(texts) -> (len(texts), dim) array``, or with ``reports_progress``: ``fn(texts, advance)``
FeatureFn = Callable[..., np.ndarray]


def default_cache_root() -> Path:
    """``$TASKSIFT_CACHE`` if set, else ``~/.cache/tasksift``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "tasksift"


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal settings always give the same string (and hash)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def settings_key(settings: Mapping[str, Any]) -> str:
    """The sha256 (hex) of the canonical JSON of ``settings``: the name of the cache directory."""
    return hashlib.sha256(canonical_json(settings).encode("utf-8")).hexdigest()


def text_digest(text: str) -> bytes:
    """sha256 digest of one text (UTF-8; lone surrogates kept as they are)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


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


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (POSIX); a no-op where directories cannot be opened."""
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


def _tmp_name(final: Path) -> Path:
    """A temporary sibling of ``final`` that names this host and process (so stale ones can be swept)."""
    return final.with_name(f"{final.name}.{_HOST}.{os.getpid()}{_TMP_SUFFIX}")


def _atomic_write(final: Path, write: Callable[[Any], None]) -> None:
    """Write ``final`` via a temporary file: write, flush, fsync, rename, fsync the directory."""
    tmp = _tmp_name(final)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(final.parent)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


class _RateColumn(ProgressColumn):
    """Rows per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        label = "? rows/s" if speed is None else f"{speed:,.1f} rows/s"
        return Text(label, style="progress.data.speed")


def make_progress(console: Console | None = None) -> Progress:
    """The progress display used by :meth:`FeatureCache.compute`: bar, rows done, rows/s, elapsed, ETA."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
    )


@dataclass(frozen=True)
class _Shard:
    index: int
    start: int
    stop: int
    key: str

    @property
    def rows(self) -> int:
        return self.stop - self.start


@dataclass
class CachedFeatures:
    """The features of one :meth:`FeatureCache.compute` call: shard files in row order plus what it cost."""

    cache_dir: Path
    kind: str
    settings: dict[str, Any]
    meta: dict[str, Any]
    shard_keys: list[str]
    shard_paths: list[Path]
    shard_rows: list[int]
    dim: int
    n_computed: int
    n_reused: int
    seconds: float
    rows_computed: int = 0
    compute_seconds: float = 0.0
    _offsets: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._offsets = [0]
        for rows in self.shard_rows:
            self._offsets.append(self._offsets[-1] + rows)

    @property
    def n_rows(self) -> int:
        """Number of rows (texts)."""
        return self._offsets[-1]

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_rows, dim)``."""
        return (self.n_rows, self.dim)

    @property
    def n_shards(self) -> int:
        """Number of shards (finished ones; all of them after ``compute`` returns)."""
        return len(self.shard_paths)

    def __len__(self) -> int:
        return self.n_rows

    def iter_shards(self) -> Iterator[np.ndarray]:
        """Each shard as a read-only memory-mapped float32 array, in row order."""
        for path in self.shard_paths:
            yield np.load(path, mmap_mode="r")

    def matrix(self) -> np.ndarray:
        """All rows as one in-memory float32 array (the shards, memory-mapped and copied in row order)."""
        out = np.empty(self.shape, dtype=np.float32)
        for start, shard in zip(self._offsets[:-1], self.iter_shards(), strict=True):
            out[start : start + shard.shape[0]] = shard
        return out

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary for a manifest: where the cache is, its settings, shard counts, timings."""
        return {
            "kind": self.kind,
            "cache_dir": str(self.cache_dir),
            "settings_key": self.cache_dir.name,
            "settings": self.settings,
            **({"meta": self.meta} if self.meta else {}),
            "rows": self.n_rows,
            "dim": self.dim,
            "shards": {
                "total": self.n_shards,
                "computed": self.n_computed,
                "reused": self.n_reused,
                "shard_size": self.settings.get("shard_size"),
            },
            "rows_computed": self.rows_computed,
            "seconds": round(self.seconds, 4),
            "compute_seconds": round(self.compute_seconds, 4),
        }


class FeatureCache:
    """Shard files of float32 feature rows, keyed by the feature settings and by the content of the texts.

    ``settings`` must be JSON-serialisable and describe everything that changes the features (model identity,
    dimensions, normalisation, maximum sequence length, ...); ``shard_size`` (rows per shard) is one of them,
    :data:`DEFAULT_SHARD_SIZE` when absent. ``meta`` is recorded in :meth:`CachedFeatures.info` but is not part
    of the key (for example a model's path, which may differ between machines that share a cache).
    """

    def __init__(
        self,
        root: str | Path | None,
        kind: str,
        settings: Mapping[str, Any],
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
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

    def finished_dim(self, key: str, rows: int) -> int | None:
        """The width of shard ``key`` if it is finished and its file agrees with its marker, else ``None``."""
        marker = self.marker_path(key)
        try:
            info = json.loads(marker.read_text(encoding="utf-8"))
            if int(info["rows"]) != rows:
                return None
            dim = int(info["dim"])
            arr = np.load(self.shard_path(key), mmap_mode="r")
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if arr.dtype != np.float32 or arr.shape != (rows, dim):
            return None
        return dim

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
        self._prepare_dir()
        self._sweep_stale_tmp()

        # Which shards are finished now: decides the progress total; rechecked before computing each one.
        done_dims: dict[str, int] = {}
        todo_rows = 0
        pending: set[str] = set()
        for shard in shards:
            if shard.key in done_dims or shard.key in pending:
                continue
            found = self.finished_dim(shard.key, shard.rows)
            if found is None:
                pending.add(shard.key)
                todo_rows += shard.rows
            else:
                done_dims[shard.key] = found
        for found in done_dims.values():
            dim = self._check_dim(dim, found, "a cached shard")
        cached_rows = len(texts) - todo_rows

        n_computed = n_reused = rows_computed = 0
        compute_seconds = 0.0
        with _ProgressTask(progress, desc or self.kind, todo_rows, cached_rows) as bar:
            for shard in shards:
                if shard.key not in done_dims:
                    found = self.finished_dim(shard.key, shard.rows)  # another process may have finished it
                    if found is not None:
                        done_dims[shard.key] = self._check_dim(dim, found, "a cached shard")
                        dim = done_dims[shard.key]
                        bar.finish_shard(shard.rows)
                if shard.key in done_dims:
                    n_reused += 1
                    continue
                chunk = [texts[i] for i in range(shard.start, shard.stop)]
                t_shard = time.perf_counter()
                out = fn(chunk, bar.advance) if reports_progress else fn(chunk)
                arr = self._validate(out, shard, dim)
                seconds = time.perf_counter() - t_shard
                dim = arr.shape[1]
                self._store(shard.key, arr, seconds)
                done_dims[shard.key] = dim
                n_computed += 1
                rows_computed += shard.rows
                compute_seconds += seconds
                bar.finish_shard(shard.rows)

        return CachedFeatures(
            cache_dir=self.dir,
            kind=self.kind,
            settings=self.settings,
            meta=self.meta,
            shard_keys=[s.key for s in shards],
            shard_paths=[self.shard_path(s.key) for s in shards],
            shard_rows=[s.rows for s in shards],
            dim=int(dim) if dim is not None else 0,
            n_computed=n_computed,
            n_reused=n_reused,
            seconds=time.perf_counter() - t0,
            rows_computed=rows_computed,
            compute_seconds=compute_seconds,
        )

    # -- for executors that compute shards elsewhere (tasksift.engine) -----------------------------------------

    def prepare(self) -> None:
        """Create the cache directory, record its settings, sweep temporary files of dead local processes."""
        self._prepare_dir()
        self._sweep_stale_tmp()

    def unfinished(self, texts: Sequence[str]) -> list[tuple[int, int, str]]:
        """``(start, stop, key)`` of each shard of ``texts`` that is not finished, each key once, in row order."""
        seen: set[str] = set()
        out = []
        for shard in self._plan(texts):
            if shard.key in seen:
                continue
            seen.add(shard.key)
            if self.finished_dim(shard.key, shard.rows) is None:
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
        for shard in shards:
            found = self.finished_dim(shard.key, shard.rows)
            if found is None:
                raise ValueError(f"shard {shard.index} (rows {shard.start}-{shard.stop - 1}) is not finished")
            dim = self._check_dim(dim, found, "a cached shard")
        return CachedFeatures(
            cache_dir=self.dir, kind=self.kind, settings=self.settings, meta=self.meta,
            shard_keys=[s.key for s in shards], shard_paths=[self.shard_path(s.key) for s in shards],
            shard_rows=[s.rows for s in shards], dim=int(dim) if dim is not None else 0, n_computed=n_computed,
            n_reused=len(shards) - n_computed, seconds=seconds, rows_computed=rows_computed,
            compute_seconds=compute_seconds,
        )

    # -- internals -------------------------------------------------------------------------------------------

    def _plan(self, texts: Sequence[str]) -> list[_Shard]:
        size = self.shard_size
        shards = []
        for index in range(math.ceil(len(texts) / size)):
            start, stop = index * size, min((index + 1) * size, len(texts))
            key = shard_key([texts[i] for i in range(start, stop)], offset=start)
            shards.append(_Shard(index, start, stop, key))
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
        _atomic_write(path, lambda f: f.write(text.encode("utf-8")))

    def _sweep_stale_tmp(self) -> None:
        """Remove temporary files that a dead process on this host left behind."""
        for tmp in self.dir.glob(f"*{_TMP_SUFFIX}"):
            parts = tmp.name[: -len(_TMP_SUFFIX)].rsplit(".", 2)
            if len(parts) != 3 or parts[1] != _HOST or not parts[2].isdigit():
                continue
            pid = int(parts[2])
            if pid != os.getpid() and not _pid_alive(pid):
                tmp.unlink(missing_ok=True)

    @staticmethod
    def _check_dim(expected: int | None, found: int, what: str) -> int:
        if expected is not None and found != expected:
            raise ValueError(f"{what} has {found} columns, expected {expected}")
        return found

    def _validate(self, out: Any, shard: _Shard, dim: int | None) -> np.ndarray:
        arr = np.ascontiguousarray(np.asarray(out, dtype=np.float32))
        where = f"shard {shard.index} (rows {shard.start}-{shard.stop - 1})"
        if arr.ndim != 2 or arr.shape[0] != shard.rows:
            raise ValueError(f"the feature function returned shape {arr.shape} for {where}, "
                             f"expected ({shard.rows}, dim)")
        self._check_dim(dim, arr.shape[1], f"the feature function's output for {where}")
        if not np.isfinite(arr).all():
            raise ValueError(f"the feature function returned NaN or infinite values for {where}")
        return arr

    def _store(self, key: str, arr: np.ndarray, seconds: float) -> None:
        marker = self.marker_path(key)
        marker.unlink(missing_ok=True)  # a stale marker must never vouch for the file being replaced
        _atomic_write(self.shard_path(key), lambda f: np.lib.format.write_array(f, arr, allow_pickle=False))
        info = {"rows": int(arr.shape[0]), "dim": int(arr.shape[1]), "seconds": round(seconds, 4)}
        _atomic_write(marker, lambda f: f.write(json.dumps(info).encode("utf-8")))


class _ProgressTask:
    """One rows-based task on a rich progress display (owned here, or lent by the caller)."""

    def __init__(self, progress: bool | Progress, desc: str, total: int, cached: int) -> None:
        self._own: Progress | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._shard_done = 0
        if total == 0 or progress is False:
            return
        if isinstance(progress, Progress):
            self._progress = progress
        else:
            self._own = self._progress = make_progress()
        label = desc if cached == 0 else f"{desc} ({cached:,} rows cached)"
        self._task = self._progress.add_task(label, total=total)

    def __enter__(self) -> _ProgressTask:
        if self._own is not None:
            self._own.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._own is not None:
            self._own.stop()
        elif self._progress is not None and self._task is not None:
            self._progress.stop_task(self._task)

    def advance(self, rows: int) -> None:
        """Rows done inside the current shard (reported by the feature function)."""
        self._shard_done += rows
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, rows)

    def finish_shard(self, rows: int) -> None:
        """A shard of ``rows`` rows is done: move the bar to its end whatever the function reported."""
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, max(0, rows - self._shard_done))
        self._shard_done = 0
