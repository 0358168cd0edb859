"""Positions in a sequence: the one check that an int index names an element, shared by the lazy sequences."""

from __future__ import annotations

import operator
from typing import Any


def position(index: Any, n: int, what: str) -> int:
    """``index`` (an int, or anything with ``__index__``) as a position in ``0..n-1``, counting from the end when
    it is negative; an ``IndexError`` naming ``what`` (e.g. ``"texts"``) when it is outside."""
    i = operator.index(index)
    if i < 0:
        i += n
    if not 0 <= i < n:
        raise IndexError(f"{what[:-1]} {index} is outside the {n} {what}")
    return i
