"""Vectors from .npy files and from the Python API: shape, alignment and finiteness checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasksift.records import check_vectors, load_vectors
from tasksift.records import vectors as vectors_module
from tasksift.util.errors import InputError


def save(tmp: Path, array: np.ndarray, name: str = "X.npy") -> Path:
    path = tmp / name
    np.save(path, array)
    return path


def load_error(path: Path, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        load_vectors(path, **kwargs)
    return str(info.value)


def test_float32_file_stays_memory_mapped(tmp_path: Path) -> None:
    data = np.arange(12, dtype=np.float32).reshape(4, 3)
    out = load_vectors(save(tmp_path, data), expected_rows=4, expected_dim=3)
    assert isinstance(out, np.memmap)
    np.testing.assert_array_equal(out, data)


def test_other_dtypes_become_float32(tmp_path: Path) -> None:
    data = np.arange(12, dtype=np.float64).reshape(4, 3) / 7
    out = load_vectors(save(tmp_path, data))
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, data, rtol=1e-6)
    ints = load_vectors(save(tmp_path, np.ones((2, 2), dtype=np.int64), "I.npy"))
    assert ints.dtype == np.float32


def test_row_count_mismatch_names_both_counts_and_records_file(tmp_path: Path) -> None:
    message = load_error(save(tmp_path, np.zeros((5, 3), np.float32)), expected_rows=4,
                         records_path="pool.jsonl")
    assert "X.npy" in message and "5 rows" in message and "4 records" in message and "pool.jsonl" in message


def test_dim_mismatch(tmp_path: Path) -> None:
    message = load_error(save(tmp_path, np.zeros((4, 3), np.float32)), expected_dim=8, what="target vectors")
    assert "target vectors have 3 dimensions, expected 8" in message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_name_the_first_bad_row(tmp_path: Path, bad: float) -> None:
    data = np.zeros((6, 3), np.float32)
    data[4, 1] = bad
    data[5, 0] = bad
    message = load_error(save(tmp_path, data))
    assert "NaN or inf" in message and "row 4" in message


def test_finiteness_is_checked_chunk_by_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vectors_module, "CHUNK_BYTES", 24)  # two rows of 3 float32 per chunk
    data = np.zeros((9, 3), np.float32)
    data[7, 2] = np.nan
    assert "row 7" in load_error(save(tmp_path, data))
    wide = np.zeros((9, 3), np.float64)
    wide[5, 0] = 1e300  # overflows float32: becomes inf in the conversion
    assert "row 5" in load_error(save(tmp_path, wide, "W.npy"))


def test_not_two_dimensional(tmp_path: Path) -> None:
    message = load_error(save(tmp_path, np.zeros(5, np.float32)))
    assert "2-D" in message and "(5,)" in message


def test_missing_file(tmp_path: Path) -> None:
    message = load_error(tmp_path / "none.npy")
    assert "none.npy" in message and "not found" in message


def test_not_a_npy_file(tmp_path: Path) -> None:
    text = tmp_path / "vectors.npy"
    text.write_text("1,2,3\n")
    assert "not a .npy file" in load_error(text)
    npz = tmp_path / "v.npz"
    np.savez(npz, x=np.zeros((2, 2)))
    assert ".npz archive" in load_error(npz)
    assert "must hold numbers" in load_error(save(tmp_path, np.array([["a", "b"]]), "S.npy"))


def test_empty_matrix(tmp_path: Path) -> None:
    assert "empty" in load_error(save(tmp_path, np.zeros((0, 3), np.float32)))


def test_check_vectors_in_memory() -> None:
    ok = np.ones((3, 2), np.float32)
    assert check_vectors(ok, "pool vectors", expected_rows=3, expected_dim=2) is ok
    np.testing.assert_array_equal(check_vectors([[1, 2], [3, 4]], "pool vectors"), [[1, 2], [3, 4]])
    bad = np.ones((3, 2))
    bad[2, 0] = np.nan
    with pytest.raises(InputError, match="first in row 2"):
        check_vectors(bad, "pool vectors")
    with pytest.raises(InputError, match="3 rows but the records has 5 records"):
        check_vectors(ok, "pool vectors", expected_rows=5)
    with pytest.raises(InputError, match="2-D"):
        check_vectors([[1, 2], [3]], "pool vectors")
    with pytest.raises(InputError, match="2-D"):
        check_vectors(np.ones((2, 2, 2)), "pool vectors")
