"""Vectors the user already has (``--pool-vectors X.npy``), checked before any selector sees them.

A ``.npy`` file is memory-mapped, so a pool of vectors larger than memory can be checked and searched without
being read whole: finiteness is checked a chunk of rows at a time, and a float32 or float16 C-contiguous file
is returned still memory-mapped (float16: half the disk and memory; the selectors that read a pool block by
block, ``knn`` and ``tsds``, convert a block at a time, the others convert it whole). Any other numeric dtype
is converted to float32 (one chunked copy, checked as it goes, so float64 values too large for float32 are
caught as inf).

Numbers must also mean something in float32 arithmetic: a row whose squared norm exceeds a quarter of the
largest float32 (a norm above about 9.2e18) is refused, naming the file and the row, because normalising it
or computing its distance to another row (``|x|^2 + |y|^2 - 2 x.y``) would overflow to inf and quietly turn every
score into 0 or NaN. Rows of zeros are allowed: under the ``cosine`` metric a zero row stays zero after
normalisation (it has similarity 0 to every vector), under ``l2`` and ``ip`` it is an ordinary point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tasksift.util.errors import InputError

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
#: bytes of float32 rows checked (or converted) at a time
CHUNK_BYTES = 64 << 20
#: the largest squared row norm allowed: the squared distance of two such rows still fits in float32
MAX_SQUARED_NORM = float(np.finfo(np.float32).max) / 4


def load_vectors(path: str | Path, *, expected_rows: int | None = None, expected_dim: int | None = None,
                 what: str = "pool vectors", records_path: str | Path | None = None) -> np.ndarray:
    """Memory-map a ``.npy`` matrix and check it: 2-D, numeric, ``expected_rows`` rows (one per record of
    ``records_path``), ``expected_dim`` columns, no NaN or inf. Returns float32 rows, or the float16 rows of a
    float16 file (still memory-mapped)."""
    p = Path(path)
    _check_npy_file(p, what)
    try:
        array = np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise InputError(f"cannot read {what} as a .npy array: {e}", path=p,
                         fix="save a numeric matrix with numpy.save") from e
    return _checked(array, what, p, expected_rows, expected_dim, records_path, half=True)


def check_vectors(array: Any, what: str = "vectors", *, expected_rows: int | None = None,
                  expected_dim: int | None = None, records_path: str | Path | None = None,
                  half: bool = False) -> np.ndarray:
    """The checks of :func:`load_vectors` for a matrix passed through the Python API. Returns float32 rows
    (the array itself when it already is float32 and C-contiguous), or with ``half`` float16 rows as they are
    (a C-contiguous float16 array is not copied)."""
    try:
        matrix = np.asarray(array)
    except ValueError as e:  # ragged nested lists
        raise InputError(f"{what} must be a 2-D matrix (rows x dimensions): {e}",
                         fix="give one vector of the same length per record") from e
    return _checked(matrix, what, None, expected_rows, expected_dim, records_path, half=half)


def _check_npy_file(path: Path, what: str) -> None:
    if not path.exists():
        raise InputError(f"{what} file not found", path=path, fix="check the path")
    try:
        with open(path, "rb") as f:
            magic = f.read(len(_NPY_MAGIC))
    except OSError as e:
        raise InputError(f"cannot read {what}: {e.strerror or e}", path=path,
                         fix="check the path and its permissions") from e
    if magic == _NPY_MAGIC:
        return
    if magic.startswith(_ZIP_MAGIC):
        raise InputError(f"{what} is an .npz archive, not a .npy matrix", path=path,
                         fix="save the matrix alone with numpy.save(path, array)")
    raise InputError(f"{what} is not a .npy file", path=path, fix="save the matrix with numpy.save(path, array)")


def _checked(array: np.ndarray, what: str, path: Path | None, expected_rows: int | None,
             expected_dim: int | None, records_path: str | Path | None, *, half: bool = False) -> np.ndarray:
    if array.dtype.kind not in "iuf":
        raise InputError(f"{what} must hold numbers, not dtype {array.dtype}", path=path,
                         fix="save a float matrix (float32 is best)")
    if array.ndim != 2:
        raise InputError(f"{what} must be a 2-D matrix (rows x dimensions), got shape {array.shape}", path=path,
                         fix="reshape to (number of records, dimensions)")
    rows, dim = array.shape
    if expected_rows is not None and rows != expected_rows:
        source = str(records_path) if records_path is not None else "the records"
        raise InputError(f"{what} have {rows} rows but {source} has {expected_rows} records; row i must be the "
                         "vector of record i", path=path,
                         fix="compute the vectors from the same records, in the same order")
    if expected_dim is not None and dim != expected_dim:
        raise InputError(f"{what} have {dim} dimensions, expected {expected_dim}", path=path,
                         fix="pool and target vectors must come from the same feature model")
    if rows == 0 or dim == 0:
        raise InputError(f"{what} are empty (shape {array.shape})", path=path,
                         fix="give at least one row of at least one dimension")
    return _float32_finite(array, what, path, half=half)


def _float32_finite(array: np.ndarray, what: str, path: Path | None, *, half: bool = False) -> np.ndarray:
    """float32 rows of ``array`` (float16 rows kept as they are with ``half``), checked for NaN and inf a chunk
    at a time (never a whole-array temporary)."""
    kept = (np.float32, np.float16) if half else (np.float32,)
    keep = array.dtype in kept and array.flags.c_contiguous
    out = array if keep else np.empty(array.shape, dtype=np.float32)
    step = max(1, CHUNK_BYTES // (4 * array.shape[1]))
    for start in range(0, array.shape[0], step):
        chunk = out[start:start + step]
        if not keep:
            with np.errstate(over="ignore", invalid="ignore"):
                chunk[...] = array[start:start + step]
        with np.errstate(over="ignore", invalid="ignore"):
            wide = chunk.astype(np.float32) if chunk.dtype == np.float16 else chunk
            squared = np.einsum("ij,ij->i", wide, wide)
        fine = squared <= MAX_SQUARED_NORM  # False for NaN, inf and overflowing rows
        if not fine.all():
            _refuse_row(chunk, start, int(np.argmin(fine)), what, path)
    return out


def _refuse_row(chunk: np.ndarray, start: int, i: int, what: str, path: Path | None) -> None:
    """Raise for row ``i`` of ``chunk`` (row ``start + i`` of the matrix): non-finite, or a norm too large."""
    if not np.isfinite(chunk[i]).all():
        raise InputError(f"{what} have NaN or inf values (first in row {start + i})", path=path,
                         fix="clean or drop those rows and their records")
    raise InputError(f"{what}: row {start + i} has a norm too large for float32 arithmetic (its squared norm "
                     f"exceeds {MAX_SQUARED_NORM:.3g})", path=path,
                     fix="rescale the vectors (for example divide every row by its norm)")
