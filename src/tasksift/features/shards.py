"""Reading the feature cache back: one shard file checked against its completion marker, and
:class:`CachedFeatures`, the shards of one :meth:`~tasksift.features.cache.FeatureCache.compute` call.

A shard is float32 rows in a ``.npy`` file. Its marker (``<key>.done``, JSON) records the shard's ``rows`` and
``dim`` and the checksum of its rows' bytes (``"xxh3_64:<hex>"``, from the ``xxhash`` package that ``datasets``
installs; ``"blake2b:<hex>"`` where xxhash is missing). A shard counts as finished when its marker parses and the
file's ``.npy`` header and size agree with it (:func:`layout_ok`: cheap, no data is read). Its rows are checked
when they are read (:func:`read_into`, :func:`load_checked`): bytes that do not match the checksum (flipped,
overwritten, swapped with another shard's) make the read report a problem instead of returning the rows.

A marker without a checksum (written before checksums existed) is still honoured: its shard is checked by shape
and dtype, and its rows must be finite. It gets a checksum when the shard is next written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tasksift.util.errors import InputError

try:
    import xxhash
except ImportError:  # pragma: no cover - xxhash comes with datasets, a dependency
    xxhash = None

_log = logging.getLogger("tasksift")

#: the checksum algorithm new markers record
ALGORITHM = "xxh3_64" if xxhash is not None else "blake2b"
#: bytes read (and hashed while still in the CPU cache) at a time
READ_CHUNK = 256 << 10
_FLOAT32 = np.lib.format.dtype_to_descr(np.dtype(np.float32))


class _Hasher(Protocol):
    def update(self, data: Any, /) -> None: ...

    def hexdigest(self) -> str: ...


def _hasher(algorithm: str) -> _Hasher | None:
    """A fresh hasher for ``algorithm``, or ``None`` when this installation cannot compute it."""
    if algorithm == "xxh3_64" and xxhash is not None:
        return xxhash.xxh3_64()
    if algorithm == "blake2b":
        return hashlib.blake2b(digest_size=16)
    return None


def checksum(rows: np.ndarray) -> str:
    """The checksum a marker records for ``rows`` (float32, C-contiguous): ``"<algorithm>:<hex>"``."""
    hasher = _hasher(ALGORITHM)
    assert hasher is not None
    hasher.update(memoryview(np.ascontiguousarray(rows, dtype=np.float32)).cast("B"))
    return f"{ALGORITHM}:{hasher.hexdigest()}"


@dataclass(frozen=True)
class Marker:
    """What a completion marker vouches for: the shard's width and the checksum of its rows (``None``: an
    older marker without one)."""

    dim: int
    checksum: str | None


def marker_text(rows: int, dim: int, seconds: float, digest: str) -> str:
    return json.dumps({"rows": rows, "dim": dim, "seconds": round(seconds, 4), "checksum": digest})


def read_marker(path: Path, rows: int) -> Marker | None:
    """The marker at ``path`` if it parses and is for ``rows`` rows, else ``None``."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        if int(info["rows"]) != rows:
            return None
        dim = int(info["dim"])
        digest = info.get("checksum")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if dim < 0 or (digest is not None and not isinstance(digest, str)):
        return None
    return Marker(dim, digest)


def _data_offset(f: Any, rows: int, dim: int) -> int | None:
    """Where the rows start in the open ``.npy`` file ``f``, if its header says float32 ``(rows, dim)`` in C
    order and its size is exactly header plus rows; else ``None``."""
    try:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
    except (ValueError, OSError, SyntaxError, TypeError):
        return None
    if fortran or np.lib.format.dtype_to_descr(dtype) != _FLOAT32 or tuple(shape) != (rows, dim):
        return None
    offset = f.tell()
    if os.fstat(f.fileno()).st_size != offset + rows * dim * 4:
        return None
    return offset


def layout_ok(path: Path, rows: int, dim: int) -> bool:
    """Whether the shard file exists with a float32 ``(rows, dim)`` header and exactly that many bytes."""
    try:
        with open(path, "rb") as f:
            return _data_offset(f, rows, dim) is not None
    except OSError:
        return False


def _content_problem(hasher: _Hasher | None, want: str | None, rows: np.ndarray) -> str | None:
    """What is wrong with rows whose bytes went through ``hasher``: a checksum mismatch, or (without a usable
    checksum) a NaN or infinite value; ``None`` if nothing."""
    if hasher is not None:
        if hasher.hexdigest() != want:
            return "its bytes do not match the checksum in its marker"
        return None
    if not np.isfinite(rows).all():
        return "it holds NaN or infinite values"
    return None


def _expect(digest: str | None) -> tuple[_Hasher | None, str | None]:
    if digest is None:
        return None, None
    algorithm, _, want = digest.partition(":")
    return _hasher(algorithm), want


def read_into(path: Path, dest: np.ndarray, digest: str | None) -> str | None:
    """Read the shard at ``path`` into ``dest`` (float32, C-contiguous, its shape), hashing each chunk as it
    arrives; returns what is wrong with it (``dest`` then holds nothing to use), or ``None``."""
    rows, dim = dest.shape
    hasher, want = _expect(digest)
    try:
        with open(path, "rb", buffering=0) as f:
            if _data_offset(f, rows, dim) is None:
                return "its file does not have the shape its marker records"
            view = memoryview(dest).cast("B")
            pos = 0
            while pos < len(view):
                n = f.readinto(view[pos:pos + READ_CHUNK])
                if not n:
                    return "its file is shorter than its marker says"
                if hasher is not None:
                    hasher.update(view[pos:pos + n])
                pos += n
    except OSError as err:
        return f"it cannot be read ({err.strerror or err})"
    return _content_problem(hasher, want, dest)


def load_checked(path: Path, rows: int, dim: int, digest: str | None) -> tuple[np.ndarray | None, str | None]:
    """The shard at ``path`` memory-mapped (read-only) once its bytes are checked, or ``(None, problem)``."""
    if not layout_ok(path, rows, dim):
        return None, "its file does not have the shape its marker records"
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        return None, f"it cannot be read ({err})"
    hasher, want = _expect(digest)
    if hasher is not None:
        hasher.update(memoryview(arr).cast("B") if arr.size else b"")
    problem = _content_problem(hasher, want, arr)
    return (None, problem) if problem else (arr, None)


@dataclass
class CachedFeatures:
    """The features of one :meth:`FeatureCache.compute` call: shard files in row order plus what it cost.

    ``checksums`` holds each shard's expected checksum (``None``: an older marker without one). Every read checks
    every shard it reads. ``repair(i)``, when given, recomputes and stores shard ``i`` and returns its rows and
    their checksum: a shard that fails its check is then recomputed, with a warning on the ``tasksift`` logger;
    without ``repair`` its marker is removed and the read raises :class:`InputError`."""

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
    checksums: list[str | None] = field(default_factory=list)
    repair: Callable[[int], tuple[np.ndarray, str]] | None = field(default=None, repr=False)
    _offsets: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._offsets = [0]
        for rows in self.shard_rows:
            self._offsets.append(self._offsets[-1] + rows)
        if not self.checksums:
            self.checksums = [None] * len(self.shard_paths)

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
        """Each shard, checked, as a read-only float32 array (memory-mapped unless it had to be recomputed), in
        row order."""
        for i, path in enumerate(self.shard_paths):
            arr, problem = load_checked(path, self.shard_rows[i], self.dim, self.checksums[i])
            if problem is not None:
                arr = self._recomputed(i, problem)
                arr.flags.writeable = False
            yield arr

    def matrix(self) -> np.ndarray:
        """All rows as one in-memory float32 array (each shard read, and checked, into its rows)."""
        out = np.empty(self.shape, dtype=np.float32)
        for i, path in enumerate(self.shard_paths):
            rows = out[self._offsets[i]:self._offsets[i + 1]]
            problem = read_into(path, rows, self.checksums[i])
            if problem is not None:
                rows[...] = self._recomputed(i, problem)
        return out

    def verify(self) -> int:
        """Check every shard (recomputing those that fail, as a read would); returns how many failed."""
        failed = 0
        for i, path in enumerate(self.shard_paths):
            problem = load_checked(path, self.shard_rows[i], self.dim, self.checksums[i])[1]
            if problem is not None:
                self._recomputed(i, problem)
                failed += 1
        return failed

    def _recomputed(self, i: int, problem: str) -> np.ndarray:
        """The rows of shard ``i``, whose file failed its check, recomputed (or InputError without ``repair``)."""
        path = self.shard_paths[i]
        if self.repair is None:
            path.with_suffix(".done").unlink(missing_ok=True)
            raise InputError(f"a feature cache shard failed its check: {problem}", path=path,
                             fix="run the command again to recompute it")
        _log.warning("tasksift: feature cache shard %s failed its check (%s); recomputing it", path, problem)
        rows, digest = self.repair(i)
        for j, key in enumerate(self.shard_keys):
            if key == self.shard_keys[i]:
                self.checksums[j] = digest
        self.n_computed += 1
        self.n_reused = max(0, self.n_reused - 1)
        self.rows_computed += self.shard_rows[i]
        return rows

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
