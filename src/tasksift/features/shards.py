"""Reading the feature cache back: one shard file checked against its completion marker, and
:class:`CachedFeatures`, the shards of one :meth:`~tasksift.features.cache.FeatureCache.compute` call.

A shard is float32 rows in a ``.npy`` file (float16 rows in a cache made with ``dtype="float16"``: half the disk
and memory). Its marker (``<key>.done``, JSON) records the shard's ``rows`` and
``dim`` and the checksum of its rows' bytes (``"xxh3_64:<hex>"``, from the ``xxhash`` package that ``datasets``
installs; ``"blake2b:<hex>"`` where xxhash is missing). A shard counts as finished when its marker parses and the
file's ``.npy`` header and size agree with it (:func:`layout_ok`: cheap, no data is read). Its rows are checked
when they are read (:func:`content_problem`): bytes that do not match the checksum (flipped, overwritten,
swapped with another shard's) make the read report a problem instead of returning the rows.

A marker without a checksum (written before checksums existed) is still honoured: its shard is checked by shape
and dtype, and its rows must be finite. It gets a checksum when the shard is next written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tasksift.util.env import default_threads
from tasksift.util.errors import InputError
from tasksift.util.io import atomic_write, write_text_atomic

try:
    import xxhash
except ImportError:  # pragma: no cover - xxhash comes with datasets, a dependency
    xxhash = None

_log = logging.getLogger("tasksift")
#: bytes read (and hashed while still in the CPU cache) at a time
READ_CHUNK = 256 << 10

#: the checksum algorithm new markers record
ALGORITHM = "xxh3_64" if xxhash is not None else "blake2b"
#: a pool of at least this many bytes is served memory-mapped by :meth:`CachedFeatures.array`
MAPPED_MIN_BYTES = 2 << 30
#: the storage types a shard may have
DTYPES = {"float32": np.dtype(np.float32), "float16": np.dtype(np.float16)}


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
    """The checksum a marker records for ``rows`` (float32 or float16, C-contiguous; any other type as float32):
    ``"<algorithm>:<hex>"``."""
    hasher = _hasher(ALGORITHM)
    assert hasher is not None
    rows = np.asarray(rows)
    rows = np.ascontiguousarray(rows, dtype=rows.dtype if rows.dtype in DTYPES.values() else np.float32)
    if rows.size:
        hasher.update(memoryview(rows).cast("B"))
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


def _data_offset(f: Any, rows: int, dim: int, dtype: Any = np.float32) -> int | None:
    """Where the rows start in the open ``.npy`` file ``f``, if its header says ``dtype`` (float32 by default)
    ``(rows, dim)`` in C order and its size is exactly header plus rows; else ``None``."""
    dtype_wanted = np.dtype(dtype)
    try:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
    except (ValueError, OSError, SyntaxError, TypeError):
        return None
    if fortran or np.lib.format.dtype_to_descr(dtype) != np.lib.format.dtype_to_descr(dtype_wanted) \
            or tuple(shape) != (rows, dim):
        return None
    offset = f.tell()
    if os.fstat(f.fileno()).st_size != offset + rows * dim * dtype_wanted.itemsize:
        return None
    return offset


def layout_ok(path: Path, rows: int, dim: int, dtype: Any = np.float32) -> bool:
    """Whether the shard file exists with a ``dtype`` ``(rows, dim)`` header and exactly that many bytes."""
    try:
        with open(path, "rb") as f:
            return _data_offset(f, rows, dim, dtype) is not None
    except OSError:
        return False


class _Check:
    """The check of one shard's rows: the checksum in ``digest`` computed as the bytes arrive (:meth:`update`),
    or, without one this installation can compute, a look for NaN and infinite values."""

    def __init__(self, digest: str | None) -> None:
        algorithm, _, self.want = (digest or "").partition(":")
        self.hasher = _hasher(algorithm) if digest else None

    def update(self, data: memoryview) -> None:
        if self.hasher is not None:
            self.hasher.update(data)

    def problem(self, rows: np.ndarray) -> str | None:
        """What is wrong with ``rows`` (all of whose bytes went through :meth:`update`), or ``None``."""
        if self.hasher is not None:
            return None if self.hasher.hexdigest() == self.want else "its bytes do not match the checksum in its marker"
        return None if np.isfinite(rows).all() else "it holds NaN or infinite values"


def content_problem(rows: np.ndarray, digest: str | None) -> str | None:
    """What is wrong with a shard's rows: bytes that do not match ``digest`` or, without a checksum this
    installation can compute, a NaN or infinite value; ``None`` if nothing."""
    check = _Check(digest)
    if rows.size:
        check.update(memoryview(rows).cast("B"))
    return check.problem(rows)


def read_into(path: Path, dest: np.ndarray, digest: str | None, *, check: bool = True) -> str | None:
    """Read the rows of the shard at ``path`` into ``dest`` (of the shard's type and shape, C-contiguous); returns
    what is wrong with it (``dest`` then holds nothing to use), or ``None``. The bytes are hashed a chunk at a time
    while the chunk is still in the CPU cache; with ``check=False`` only the file is read (the caller checks
    the rows with :func:`content_problem`)."""
    rows, dim = dest.shape
    verdict = _Check(digest) if check else None
    try:
        with open(path, "rb", buffering=0) as f:
            if _data_offset(f, rows, dim, dest.dtype) is None:
                return "its file does not have the shape its marker records"
            view = memoryview(dest).cast("B") if dest.size else memoryview(b"")
            pos = 0
            while pos < len(view):
                n = f.readinto(view[pos:pos + READ_CHUNK])
                if not n:
                    return "its file is shorter than its marker says"
                if verdict is not None:
                    verdict.update(view[pos:pos + n])
                pos += n
    except OSError as err:
        return f"it cannot be read ({err.strerror or err})"
    return None if verdict is None else verdict.problem(dest)


def spare_core() -> bool:
    """Whether a core is likely idle now: this process may use two or more, and the load average leaves one."""
    cores = default_threads()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return False
    return cores >= 2 and load <= cores - 1


def load_checked(path: Path, rows: int, dim: int, digest: str | None, dtype: Any = np.float32
                 ) -> tuple[np.ndarray | None, str | None]:
    """The shard at ``path`` memory-mapped (read-only) once its bytes are checked, or ``(None, problem)``."""
    if not layout_ok(path, rows, dim, dtype):
        return None, "its file does not have the shape its marker records"
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        return None, f"it cannot be read ({err})"
    problem = content_problem(arr, digest)
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
    #: the shards' storage type: ``"float32"`` or ``"float16"``
    dtype: str = "float32"
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
        """Each shard, checked, as a read-only array of the cache's type (memory-mapped unless it had to be
        recomputed), in row order."""
        for i, path in enumerate(self.shard_paths):
            arr, problem = load_checked(path, self.shard_rows[i], self.dim, self.checksums[i], self.dtype)
            if problem is not None:
                arr = self._recomputed(i, problem)
                arr.flags.writeable = False
            yield arr

    def matrix(self) -> np.ndarray:
        """All rows as one in-memory array of the cache's type (float32, or float16), each shard read into its
        rows and checked.

        When a core is likely idle (:func:`spare_core`) a helper thread hashes each shard while the next one is
        read (hashing releases the GIL); otherwise each chunk is hashed as it is read, while it is still in the
        CPU cache. See ``benchmarks/cache_verify.py`` for what either costs."""
        out = np.empty(self.shape, dtype=DTYPES[self.dtype])
        problems = self._read_checked(out)
        recomputed: dict[str, np.ndarray] = {}
        for i, problem in sorted(problems.items()):
            key = self.shard_keys[i]
            if key not in recomputed:
                recomputed[key] = self._recomputed(i, problem)
            out[self._offsets[i]:self._offsets[i + 1]] = recomputed[key]
        return out

    def array(self) -> np.ndarray:
        """All rows: in memory (:meth:`matrix`) below ``MAPPED_MIN_BYTES``, memory-mapped (:meth:`mapped`) from
        there, so a pool larger than memory is read block by block by the selectors that can."""
        size = self.n_rows * self.dim * DTYPES[self.dtype].itemsize
        return self.mapped() if size >= MAPPED_MIN_BYTES else self.matrix()

    def mapped(self) -> np.ndarray:
        """All rows memory-mapped (read-only) from one file, for a pool larger than memory: the shards, each
        checked as it is read (and recomputed if it fails), are joined once into ``joined/<key>.npy`` in the
        cache directory (the key: a hash of the shards' keys and checksums) with a marker holding the joined
        rows' checksum. A later call checks that file against its marker (a read of it, through the page cache)
        and maps it again, or writes it again. It takes the pool's size once more on disk."""
        if self.n_rows == 0 or self.dim == 0:
            return self.matrix()  # nothing to map
        wanted = json.dumps([self.dtype, self.dim, self.shard_keys, self.checksums]).encode()
        path = self.cache_dir / "joined" / f"{hashlib.sha256(wanted).hexdigest()}.npy"
        marker = read_marker(path.with_suffix(".done"), self.n_rows)
        if marker is not None and marker.dim == self.dim:
            arr, _ = load_checked(path, self.n_rows, self.dim, marker.checksum, self.dtype)
            if arr is not None:
                return arr
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".done").unlink(missing_ok=True)
        hasher = _hasher(ALGORITHM)
        assert hasher is not None

        def write(f: Any) -> None:
            header = {"descr": np.lib.format.dtype_to_descr(DTYPES[self.dtype]), "fortran_order": False,
                      "shape": self.shape}
            np.lib.format.write_array_header_1_0(f, header)
            for shard in self.iter_shards():
                data = memoryview(np.ascontiguousarray(shard)).cast("B") if shard.size else memoryview(b"")
                for lo in range(0, len(data), READ_CHUNK):
                    hasher.update(data[lo:lo + READ_CHUNK])
                    f.write(data[lo:lo + READ_CHUNK])

        atomic_write(path, write)
        write_text_atomic(path.with_suffix(".done"),
                          marker_text(self.n_rows, self.dim, 0.0, f"{ALGORITHM}:{hasher.hexdigest()}"))
        return np.load(path, mmap_mode="r", allow_pickle=False)

    def _read_checked(self, out: np.ndarray) -> dict[int, str]:
        """Read every shard into its rows of ``out``; what is wrong with each shard that fails its check."""
        problems: dict[int, str] = {}
        helper = ThreadPoolExecutor(max_workers=1) if spare_core() else None
        try:
            checks = []
            for i, path in enumerate(self.shard_paths):
                rows = out[self._offsets[i]:self._offsets[i + 1]]
                problem = read_into(path, rows, self.checksums[i], check=helper is None)
                if problem is None and helper is not None:
                    checks.append((i, helper.submit(content_problem, rows, self.checksums[i])))
                elif problem is not None:
                    problems[i] = problem
            problems.update((i, p) for i, check in checks if (p := check.result()) is not None)
        finally:
            if helper is not None:
                helper.shutdown()
        return problems

    def verify(self) -> int:
        """Check every shard (recomputing those that fail, as a read would); returns how many failed."""
        failed = 0
        for i, path in enumerate(self.shard_paths):
            problem = load_checked(path, self.shard_rows[i], self.dim, self.checksums[i], self.dtype)[1]
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
