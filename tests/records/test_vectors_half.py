"""float16 vectors: a float16 ``.npy`` stays float16 and memory-mapped (half the disk and memory), checked
chunk by chunk like float32; ``check_vectors`` keeps float16 rows only when asked (``half=True``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasksift.records import check_vectors, load_vectors
from tasksift.records import vectors as vectors_module
from tasksift.util.errors import InputError


def test_a_float16_file_stays_float16_and_memory_mapped(tmp_path: Path) -> None:
    data = (np.arange(12).reshape(4, 3) / 8).astype(np.float16)
    np.save(tmp_path / "v.npy", data)
    out = load_vectors(tmp_path / "v.npy", expected_rows=4, expected_dim=3)
    assert isinstance(out, np.memmap) and out.dtype == np.float16
    np.testing.assert_array_equal(out, data)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_in_float16_name_the_first_bad_row(tmp_path: Path, bad: float,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vectors_module, "CHUNK_BYTES", 4 * 3 * 2)  # two rows per chunk
    data = np.ones((7, 3), dtype=np.float16)
    data[5, 1] = bad
    np.save(tmp_path / "v.npy", data)
    with pytest.raises(InputError, match="first in row 5"):
        load_vectors(tmp_path / "v.npy")


def test_check_vectors_keeps_float16_only_when_asked() -> None:
    data = np.full((3, 2), 0.5, dtype=np.float16)
    assert check_vectors(data).dtype == np.float32
    kept = check_vectors(data, half=True)
    assert kept is data
    assert check_vectors(np.ones((2, 2)), half=True).dtype == np.float32  # float64 still becomes float32
