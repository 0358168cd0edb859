import numpy as np
import pytest

from tasksift.util.positions import position


def test_positions_count_from_either_end() -> None:
    assert [position(i, 4, "ids") for i in (0, 3, -1, -4, np.int64(2))] == [0, 3, 3, 0, 2]


@pytest.mark.parametrize("index", [4, -5, 100])
def test_a_position_outside_names_the_sequence(index: int) -> None:
    with pytest.raises(IndexError, match=f"^text {index} is outside the 4 texts$"):
        position(index, 4, "texts")


def test_a_float_is_no_position() -> None:
    with pytest.raises(TypeError):
        position(1.0, 4, "ids")
