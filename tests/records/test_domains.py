"""Domain labels: LESS's rule (first-seen order, ``None`` is a label) and HARP's (sorted, ``None`` is missing)."""

from __future__ import annotations

import pytest

from tasksift.records import domain_index
from tasksift.util.errors import InputError


def test_no_labels_mean_one_domain() -> None:
    names, index = domain_index(None, 3, who="less")
    assert names == ["all"] and index.tolist() == [0, 0, 0]


def test_first_seen_or_sorted_order() -> None:
    assert domain_index(["b", "a", "b"], 3, who="less")[0] == ["b", "a"]
    names, index = domain_index(["b", "a", "b"], 3, who="harp", sort=True)
    assert names == ["a", "b"] and index.tolist() == [1, 0, 1]
    assert domain_index([2, 1, 2], 3, who="less")[0] == ["2", "1"]  # labels are strings


def test_a_string_is_a_json_list_or_comma_separated() -> None:
    assert domain_index('["m", "c", "m"]', 3, who="less")[1].tolist() == [0, 1, 0]
    assert domain_index("m, c,m", 3, who="less")[0] == ["m", "c"]
    with pytest.raises(InputError, match="less: domains must be a list"):
        domain_index('{"a": 1}', 1, who="less")


def test_none_is_a_label_or_a_missing_one() -> None:
    assert domain_index([None, "a"], 2, who="less")[0] == ["None", "a"]
    assert domain_index([None, None], 2, who="less")[0] == ["None"]
    assert domain_index([None, "a"], 2, who="harp", sort=True, none_is_missing=True)[0] == ["", "a"]
    names, index = domain_index([None, None], 2, who="harp", sort=True, none_is_missing=True)
    assert names == ["all"] and index.tolist() == [0, 0]


def test_one_label_per_row() -> None:
    with pytest.raises(InputError, match="harp: 2 domain labels for 3 target examples"):
        domain_index(["a", "b"], 3, who="harp", sort=True, none_is_missing=True)
