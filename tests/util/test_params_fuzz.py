"""Fuzzing parameters: random names and values (command-line text and Python values) into
:func:`tasksift.util.params.convert_params` with every selector's declarations. A value comes back converted to
what its declaration accepts, or InputError is raised: nothing else escapes, and a selector accepts what came
back."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasksift.selectors.registry import available
from tasksift.util.errors import InputError
from tasksift.util.params import Interval, Items, convert_params

FUZZ = settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SELECTORS = available()

#: text that looks like the values parameters take, and text that does not
texts = st.sampled_from(["0", "1", "-1", "0.5", "1e5", "1e400", "-0", "nan", "inf", "-inf", "none", "None", "",
                         " ", "true", "off", "[1, 2]", "[]", "[\"a\"]", "a,b", "[1e400]", "{}", "cosine", "l2",
                         "0x10", "1_000", "9223372036854775808", "٣"]) | st.text(max_size=40)
scalars = (st.none() | st.booleans() | st.integers(-(10**300), 10**300) | st.floats() | texts | st.binary(max_size=8)
           | st.integers(-(2**63), 2**63 - 1).map(np.int64) | st.floats(width=32).map(np.float32))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.tuples(inner)
                      | st.dictionaries(st.text(max_size=4), inner, max_size=2), max_leaves=6)


@pytest.mark.parametrize("method", sorted(SELECTORS))
@FUZZ
@given(data=st.data())
def test_only_input_errors_escape_and_what_passes_is_accepted(method: str, data: st.DataObject) -> None:
    cls = SELECTORS[method]
    declarations = cls.declarations()
    names = st.sampled_from(sorted(declarations)) | st.text(max_size=10)
    given_values = data.draw(st.dictionaries(names, values, max_size=4))
    try:
        converted = convert_params(method, declarations, given_values)
    except InputError:
        return
    assert set(converted) == set(given_values)
    for name, value in converted.items():
        allowed = declarations[name]
        assert (value is None and None in allowed) or any(c is not None and c.accepts(value) for c in allowed)
    try:
        cls(3, **converted)
    except InputError:
        pass


@FUZZ
@given(text=texts)
def test_command_line_text_for_every_kind_of_declaration(text: str) -> None:
    declarations = {"count": [Interval(int, 1)], "share": [Interval(float, 0, 1, closed="neither")],
                    "maybe": [Interval(int, 0), None], "items": [Items(Interval(float, 0))]}
    for name in declarations:
        try:
            convert_params("fuzz", declarations, {name: text})
        except InputError:
            pass


@pytest.mark.parametrize("value", [10**400, "1" * 400], ids=["python int", "text"])
def test_an_int_beyond_float_range_is_refused(value: Any) -> None:
    with pytest.raises(InputError):
        convert_params("tsds", SELECTORS["tsds"].declarations(), {"seed": value})


def test_deeply_nested_list_text_is_refused() -> None:
    with pytest.raises(InputError):
        convert_params("less", SELECTORS["less"].declarations(), {"domains": "[" * 100_000})
