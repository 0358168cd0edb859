import numpy as np
import pytest

from tasksift.util import spill
from tasksift.util.spill import SpilledArray, scratch


@pytest.mark.parametrize("buffer", [4, 1 << 16])
def test_a_spilled_array_gives_back_what_was_appended(monkeypatch: pytest.MonkeyPatch, buffer: int) -> None:
    monkeypatch.setattr(spill, "BUFFER_VALUES", buffer)  # a file after 4 values, or none at all
    monkeypatch.setattr(spill, "BUFFER_BYTES", 8 * buffer)
    values = SpilledArray(np.uint64)
    want = [3, 2**64 - 1, 0, 7, 7, 11, 2**63, 1, 5]
    for v in want:
        values.append(v)
    assert len(values) == 9
    got = values.values()
    assert got.dtype == np.uint64 and got.tolist() == want
    assert values.spilled.in_file == (buffer == 4)
    values.append(13)  # appending after reading: the next read has it
    assert values.values().tolist() == [*want, 13]


@pytest.mark.parametrize("keep", [0, 2, 4, 6, 10])
def test_truncating_keeps_the_first_values_in_memory_or_in_the_file(monkeypatch: pytest.MonkeyPatch,
                                                                    keep: int) -> None:
    monkeypatch.setattr(spill, "BUFFER_VALUES", 4)
    monkeypatch.setattr(spill, "BUFFER_BYTES", 32)
    values = SpilledArray(np.int64)
    for v in range(10):
        values.append(-v)
    values.truncate(keep)
    assert values.values().tolist() == [-v for v in range(keep)]
    for v in (100, 101, 102, 103, 104):
        values.append(v)
    assert values.values().tolist() == [-v for v in range(keep)] + [100, 101, 102, 103, 104]


def test_a_mapped_array_is_read_only_and_takes_no_anonymous_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spill, "BUFFER_VALUES", 4)
    monkeypatch.setattr(spill, "BUFFER_BYTES", 32)
    values = SpilledArray(np.int64)
    for v in range(9):
        values.append(v)
    got = values.values()
    with pytest.raises(ValueError):
        got[0] = 1
    array = scratch((3, 2), np.float32)
    array[:] = 2.5
    assert array.sum() == 15.0 and isinstance(array, np.memmap)


@pytest.mark.parametrize(("buffer", "keep"), [(1 << 20, 3), (4, 0), (4, 3), (4, 9), (4, 11)])
def test_spilled_bytes_give_back_what_was_appended(monkeypatch: pytest.MonkeyPatch, buffer: int, keep: int) -> None:
    from tasksift.util.spill import SpilledBytes

    monkeypatch.setattr(spill, "BUFFER_BYTES", buffer)  # a file after 4 bytes, or none at all
    data = SpilledBytes()
    for piece in (b"ab", b"", b"cde", "\u00e9t\u00e9".encode(), b"z"):
        data.append(piece)
    assert len(data) == 11 and bytes(data.view()) == b"abcde" + "\u00e9t\u00e9".encode() + b"z"
    assert data.in_file == (buffer == 4)
    data.truncate(keep)
    data.append(b"!")
    assert bytes(data.view()) == (b"abcde" + "\u00e9t\u00e9".encode() + b"z")[:keep] + b"!"
